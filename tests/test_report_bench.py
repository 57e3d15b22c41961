import json

import numpy as np
import pandas as pd
from PIL import Image

from submission.scoring.plots import confusion, draw_run
from submission.studies import bench
from submission.train.loop import fit


def test_confusion_is_row_normalised():
    cm = confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 2])
    assert cm.iloc[0, 0] == 0.5 and cm.iloc[1, 1] == 2 / 3 and cm.iloc[5].sum() == 0
    np.testing.assert_allclose(cm.sum(1).iloc[:2], 1.0)


def test_run_plots_are_written_and_redrawn(tiny, tmp_path):
    fit(tiny(tmp_path, epochs=3))
    run = tmp_path / "seed0"
    for name in ("curves.png", "confusion_source_val.png", "target_distribution.png"):
        png = Image.open(run / name)
        assert png.size[0] > 300 and png.size[1] > 200
    cm = pd.read_csv(run / "confusion_source_val.csv")
    assert list(cm.columns)[:2] == ["true", "basophil"]
    (run / "curves.png").unlink()
    assert run / "curves.png" in draw_run(run)
    assert (run / "avg.pt").is_file() and json.loads((run / "best.json").read_text())["epoch"] in (0, 1, 2)


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


def test_results_table_and_selection_study_on_tiny_runs(tiny, demo, tmp_path):
    from submission.predict.submit import read_labels
    from submission.studies.experiments import (
        evaluate_runs,
        markdown,
        selection_markdown,
        selection_study,
        summarize,
        train_all,
    )

    base = tiny(tmp_path, epochs=3)
    configs = {"source-only": tiny(tmp_path, epochs=3, recipe="source-only"), "kit": base}
    runs = train_all(configs, tmp_path / "exp", [0])
    assert set(runs) == {("source-only", 0), ("kit", 0)}
    config = json.loads((runs[("source-only", 0)] / "config.json").read_text())
    assert config["trade_off"] == 0.0 and config["recipe"] == "source-only"
    results = evaluate_runs(runs, "WBC2", demo / "data", read_labels(demo / "labels", "WBC2"), base.cache_dir, "cpu")
    assert len(results) == 2 * 4 + 2 and results["macro_f1"].between(0, 1).all()
    assert "run's choice + TTA" in markdown(summarize(results)) and "avg.pt + TTA" in markdown(summarize(results))
    per_epoch, table = selection_study([runs[("kit", 0)]], read_labels(demo / "labels", "WBC1"), base.cache_dir, "cpu")
    assert len(per_epoch) == 3 and per_epoch["target_true_f1"].between(0, 1).all()
    from submission.studies.experiments import CRITERIA

    assert set(table["criterion"]) == set(CRITERIA) | {"average of the last epochs' weights"}
    assert {"target_im", "target_bnm", "target_snd_t0.05"} <= set(per_epoch.columns)
    assert "Spearman" in selection_markdown(table)


def test_rich_table_from_markdown():
    from submission.studies.experiments import rich_table

    t = rich_table("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |", "t")
    assert t.row_count == 2 and [c.header for c in t.columns] == ["a", "b"]
