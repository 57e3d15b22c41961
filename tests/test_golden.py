"""The kit computes what it computed when the golden outputs were written (tests/golden_runs.py):
five tiny CPU runs (adabn, mcc, seed, source-only, and mcc with AdaBN + colour augmentation),
their metrics.csv, per-epoch target logits, WBC2 logits with TTA and submission.csv."""

import numpy as np
import pandas as pd
import pytest
from golden_runs import GOLDEN, RUNS, golden_outputs


@pytest.fixture(scope="module")
def outputs(demo, tmp_path_factory):
    return golden_outputs(demo, tmp_path_factory.mktemp("golden"))


# The run with AdaBN, colour augmentation and prior EM is not bit-stable across CPU types: written on an AMD
# EPYC, it differed on an Intel Xeon by 3e-4 in the logits (one image of 30 changed class in a per-epoch share;
# the same on the commit that wrote it, so not a change of the kit). It is held to those bounds, and so is the kit
# (AdaBN too; written on an Intel Xeon, not yet checked on another CPU type); the other runs to 1e-6.
ATOL = {"methods": {"logits": 2e-3, "metrics": 0.06}, "adabn": {"logits": 2e-3, "metrics": 0.06}}
# avg.pt's BatchNorm statistics are re-estimated after averaging: on a second AMD EPYC its logits (mcc, seed) moved by
# 1.7e-6 against these files, on the commit that wrote them too; its own outputs are held to 1e-5.
AVG_ATOL = 1e-5


@pytest.mark.parametrize("run", list(RUNS))
def test_a_golden_run_is_reproduced(outputs, run):
    files = outputs[run]
    atol = ATOL.get(run, {"logits": 1e-6, "metrics": 1e-6})
    assert sorted(files) == sorted(p.name for p in (GOLDEN / run).iterdir())
    for name, path in files.items():
        want = GOLDEN / run / name
        if name.endswith(".npy"):
            tol = max(atol["logits"], AVG_ATOL) if name.endswith("avg.npy") else atol["logits"]
            np.testing.assert_allclose(np.load(path), np.load(want), rtol=0, atol=tol, err_msg=f"{run}/{name}")
        elif name == "submission.csv":
            assert path.read_text() == want.read_text(), f"{run}/{name}"
        else:  # metrics.csv and the logits CSV: same columns, numbers within 1e-6, the rest equal
            got, ref = pd.read_csv(path), pd.read_csv(want)
            assert list(got.columns) == list(ref.columns), f"{run}/{name}"
            numeric = ref.select_dtypes("number").columns
            tol = atol["metrics" if name == "metrics.csv" else "logits"]
            np.testing.assert_allclose(got[numeric].to_numpy(float), ref[numeric].to_numpy(float), rtol=0, atol=tol,
                                       err_msg=f"{run}/{name}")
            pd.testing.assert_frame_equal(got.drop(columns=numeric), ref.drop(columns=numeric))
