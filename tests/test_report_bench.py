import json

import numpy as np
import pandas as pd
from PIL import Image

from studies import bench
from submission.scoring.plots import confusion, draw_run
from submission.train.loop import fit


def test_confusion_is_row_normalised():
    cm = confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 2])
    assert cm.iloc[0, 0] == 0.5 and cm.iloc[1, 1] == 2 / 3 and cm.iloc[5].sum() == 0
    np.testing.assert_allclose(cm.sum(1).iloc[:2], 1.0)


def test_run_plots_are_written_and_redrawn(tiny, tmp_path):
    fit(tiny(tmp_path, epochs=3, plots=True))
    run = tmp_path / "seed0"
    for name in ("curves.png", "confusion_source_val.png", "target_distribution.png"):
        png = Image.open(run / name)
        assert png.size[0] > 300 and png.size[1] > 200
    cm = pd.read_csv(run / "confusion_source_val.csv")
    assert list(cm.columns)[:2] == ["true", "basophil"]
    (run / "curves.png").unlink()
    assert run / "curves.png" in draw_run(run)
    assert (run / "avg.pt").is_file() and json.loads((run / "best.json").read_text())["epoch"] in (0, 1, 2)
    fit(tiny(tmp_path / "no", epochs=1))  # --no-plots: the run without its pictures
    assert not list((tmp_path / "no/seed0").glob("*.png")) and (tmp_path / "no/seed0/best.pt").is_file()


def test_bench_runs_with_tiny_counts(tmp_path):
    result = bench.run(device="cpu", image_size=32, batch=4, steps=1, images=2, min_seconds=0.01)
    data = result["data_samples_per_s_per_worker"]
    assert set(data) == set(bench.KINDS)
    for r in data.values():
        assert r["reference"] > 0 and r["cached_vs_reference"] == r["cached"] / r["reference"]
    assert result["train_steps_per_s"]["ratio"] > 0 and result["tta_images_per_s"] > 0
    assert "FastFog (kit)" in result["transform_ms"] and result["peak_rss_mb"] > 0
    for t in bench.table(result):
        assert t.row_count > 0


def test_recipes_side_by_side_on_tiny_runs(demo, tmp_path):
    """python -m studies.study --recipes: each recipe as it is, every variant scored, the selection study."""
    from studies.study import compare_recipes
    from submission.choices import CHOICES

    base = dict(epochs=3, iters_per_epoch=3, image_size=32, batch_size=8, pretrained=False, bottleneck_dim=64,
                head_width=64, grl_max_iters=10, min_pred_classes=1, max_entropy_frac=1.0, bn_batches=2)
    compare_recipes(["source-only", "mcc"], demo, tmp_path, 1, "cpu", 0, 1e9, seeds=(0,), base=base)
    config = json.loads((tmp_path / "runs/A/source-only/seed0/config.json").read_text())
    assert config["trade_off"] == 0.0 and config["recipe"] == "source-only"
    assert json.loads((tmp_path / "runs/A/mcc/seed0/config.json").read_text())["mcc_weight"] == 1.0
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["method"]) == {"source-only", "mcc"} and results["macro_f1"].between(0, 1).all()
    picks = pd.read_csv(tmp_path / "selection_picks.csv")
    assert set(picks["choice"]) == set(CHOICES) and set(picks["method"]) == {"mcc"}  # source-only never saw WBC1
    text = (tmp_path / "recipes.md").read_text()
    assert "avg.pt + TTA" in text and "Spearman" in text
