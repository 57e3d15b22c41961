import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from submission.config import make_config
from submission.data.classes import CLASSES
from submission.errors import KitError
from submission.scoring.validators import selection_key, target_scores
from submission.train.checkpoint import RunningAverage, load_checkpoint, model_from_checkpoint
from submission.train.loop import fit


def test_the_adabn_recipe_trains_on_the_sources_and_stores_target_batchnorm(tiny, tmp_path):
    from submission.data.targets import Target
    from submission.predict.inference import predict_run

    cfg = tiny(tmp_path, recipe="adabn")
    fit(cfg)
    metrics = pd.read_csv(tmp_path / "seed0" / "metrics.csv")
    assert "mcc_loss" not in metrics and "transfer_loss" not in metrics  # no adaptation term: no column
    best = load_checkpoint(tmp_path / "seed0" / "best.pt")
    assert best["selected_by"] == "last" and best["epoch"] == 1 and best["config"]["adapt"] == "adabn"
    assert best["treatments"]["adabn"]["bn"]
    target = Target.from_split("WBC2", cfg.data_root)
    common = dict(tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=16)
    stored, off = (predict_run(best, target, adapt=a, **common) for a in ("adabn", "source"))
    assert not np.allclose(stored, off, atol=1e-4)  # inference uses the target's BatchNorm statistics


def test_every_epoch_records_the_label_free_estimate_infer_would_print(tiny, tmp_path):
    """metrics.csv's target_estimate (the `estimate` choice's column) is the trust estimate of the epoch's target
    outputs, calibrated on the source fold predicted as infer.py predicts it."""
    from submission.data.targets import Target
    from submission.errors import KitError
    from submission.predict.inference import predict_run
    from submission.scoring import trust

    cfg = tiny(tmp_path, recipe="adabn", select="estimate", keep_epochs=True)
    fit(cfg)
    metrics = pd.read_csv(tmp_path / "seed0" / "metrics.csv")
    assert metrics["target_estimate"].between(0, 1).all()
    last = load_checkpoint(tmp_path / "seed0" / "epochs" / "epoch001.pt")
    target = Target.from_split("WBC1", cfg.data_root)
    logits, val = predict_run(last, target, tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=16,
                              source_val=True, source_bn=trust.measured()["single"]["source_val_batchnorm"])
    saved = np.load(tmp_path / "seed0" / "target_logits" / "epoch001.npy")
    assert np.allclose(logits, saved, atol=1e-4)
    assert trust.estimated_f1(val.logits, val.labels, saved) == pytest.approx(metrics["target_estimate"].iloc[-1], abs=1e-4)
    assert load_checkpoint(tmp_path / "seed0" / "best.pt")["selected_by"] == "estimate"
    with pytest.raises(KitError, match="needs a held-out source fold"):
        tiny(tmp_path / "x", select="estimate", val_fold=-1)


def test_smoke_run_writes_the_run_folder(tiny, tmp_path):
    cfg = tiny(tmp_path)
    best = fit(cfg)
    run = tmp_path / "seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["image_size"] == 32 and config["iters_per_epoch_resolved"] == 3
    assert config["recipe"] == "mcc" and config["splits_dir_resolved"].endswith("splits")
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1]
    for col in ("cls_loss", "mcc_loss", "source_val_f1", "target_snd", "target_entropy",
                "target_pred_classes", "target_guard_ok", "grl_coeff", "lr"):
        assert metrics[col].notna().all(), col
    assert "target_mixval" in metrics  # NaN while every target image is predicted as one class
    ckpt = load_checkpoint(run / "best.pt")  # weights_only=True inside
    assert ckpt["classes"] == list(CLASSES) and ckpt["image_size"] == 32 and ckpt["epoch"] == best["epoch"]
    assert set(ckpt["normalization"]) == {"Acevedo_20", "Matek_19", "WBC1"} and ckpt["selected_by"] == "avg"
    assert best["averaged_epochs"] == [0, 1] and (metrics["mcc_loss"] > 0).all()  # mcc: MCC, avg.pt chosen
    assert ckpt["splits_dir"] == config["splits_dir_resolved"]
    model = model_from_checkpoint(ckpt).eval()
    assert model.predict(torch.zeros(2, 3, 32, 32)).shape == (2, 11)
    assert sorted(p.name for p in (run / "target_logits").iterdir()) == ["avg.npy", "epoch000.npy", "epoch001.npy"]
    avg_scores = target_scores(np.load(run / "target_logits" / "avg.npy"), CLASSES, config["snd_temperature"],
                               config["min_pred_classes"], config["max_entropy_frac"])
    for k, v in avg_scores.items():  # best.json scores avg.pt itself, not the last epoch it was built from
        assert best[k] == pytest.approx(v), k
    assert ckpt["metrics"]["target_snd"] == pytest.approx(avg_scores["target_snd"])
    assert (run / "last.pt").is_file() and (run / "avg.pt").is_file() and not (run / "recent").exists()


def test_same_seed_same_metrics(tiny, tmp_path):
    fit(tiny(tmp_path / "a", seed=3))
    fit(tiny(tmp_path / "b", seed=3))
    assert (tmp_path / "a/seed3/metrics.csv").read_text() == (tmp_path / "b/seed3/metrics.csv").read_text()
    fit(tiny(tmp_path / "c", seed=4))
    assert (tmp_path / "c/seed4/metrics.csv").read_text() != (tmp_path / "a/seed3/metrics.csv").read_text()


def test_the_number_of_loader_workers_does_not_change_the_run(tiny, tmp_path):
    """Augmentation randomness is drawn per sample from (seed, epoch, draw), not per worker."""
    fit(tiny(tmp_path / "w0", workers=0, cache=False))
    fit(tiny(tmp_path / "w2", workers=2, cache=False))
    a = pd.read_csv(tmp_path / "w0/seed0/metrics.csv")
    b = pd.read_csv(tmp_path / "w2/seed0/metrics.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("trade_off", [0.0, 1.0])
def test_trade_off_zero_trains_the_network_source_only(trade_off):
    """With trade-off 0 the step equals a plain cross-entropy step on everything but the adversarial head."""
    from submission.methods.model import MDDNet
    from submission.train.step import train_step

    torch.manual_seed(0)
    a = MDDNet(11, 16, 16, dropout=0.0)
    b = MDDNet(11, 16, 16, dropout=0.0)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.param_groups(0.1), lr=0.1, momentum=0.9, nesterov=True)
    opt_b = torch.optim.SGD(b.param_groups(0.1), lr=0.1, momentum=0.9, nesterov=True)
    x_s, x_t, y_s = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randint(0, 11, (4,))
    train_step(a, x_s, y_s, x_t, opt_a, 1.0, make_config(trade_off=trade_off, mcc_weight=0.0, target_in_batch=True))
    b.train()
    y, _ = b(torch.cat([x_s, x_t]), 1.0)
    opt_b.zero_grad()
    torch.nn.functional.cross_entropy(y.chunk(2)[0], y_s).backward()
    opt_b.step()
    same = [torch.allclose(p, q, atol=1e-6) for n, p, q in zip(
        [n for n, _ in a.named_parameters()], a.parameters(), b.parameters()) if not n.startswith("adv_head")]
    assert all(same) == (trade_off == 0.0)


def test_a_run_folder_is_not_overwritten(tiny, tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    fit(cfg)
    with pytest.raises(KitError, match="--resume.*--overwrite"):
        fit(cfg)
    fit(cfg, overwrite=True)


def test_resume_ends_like_an_uninterrupted_run(tiny, tmp_path, monkeypatch, interrupt_at_evaluation):
    """Interrupted inside the averaging window, at the default settings (BatchNorm re-estimation on):
    metrics and every tensor of best.pt, avg.pt and last.pt equal an uninterrupted run's."""
    fit(tiny(tmp_path / "full", epochs=4, average_last=3))
    part = tiny(tmp_path / "part", epochs=4, average_last=3)
    interrupt_at_evaluation(3)
    with pytest.raises(KeyboardInterrupt):
        fit(part)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "part/seed0/last.pt")["epoch"] == 1
    fit(part, resume=True)
    a = pd.read_csv(tmp_path / "full/seed0/metrics.csv")
    b = pd.read_csv(tmp_path / "part/seed0/metrics.csv")
    pd.testing.assert_frame_equal(a, b)
    assert load_checkpoint(tmp_path / "full/seed0/best.pt")["epoch"] == load_checkpoint(tmp_path / "part/seed0/best.pt")["epoch"]
    avg_a, avg_b = (load_checkpoint(tmp_path / f"{r}/seed0/avg.pt") for r in ("full", "part"))
    assert avg_a["metrics"]["averaged_epochs"] == avg_b["metrics"]["averaged_epochs"] == [1, 2, 3]
    assert avg_a["metrics"]["bn_batches"] == 2
    for name in ("best.pt", "avg.pt", "last.pt"):
        a, b = (load_checkpoint(tmp_path / f"{r}/seed0/{name}")["model"] for r in ("full", "part"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)


def test_avg_pt_is_the_mean_of_the_last_epochs_weights(tiny, tmp_path):
    """avg.pt against a hand-computed mean: the weights after epoch 1 come from a 2-epoch run of the
    same seed (the inv schedule and a fixed ramp do not depend on the run's length)."""
    fit(tiny(tmp_path / "three", epochs=3, average_last=2, bn_batches=0))
    fit(tiny(tmp_path / "two", epochs=2, average_last=0, select="last"))
    w1 = load_checkpoint(tmp_path / "two/seed0/last.pt")["model"]
    w2 = load_checkpoint(tmp_path / "three/seed0/last.pt")["model"]
    avg = load_checkpoint(tmp_path / "three/seed0/avg.pt")
    assert avg["metrics"]["averaged_epochs"] == [1, 2] and avg["selected_by"] == "avg"  # the kit chooses avg.pt
    for k, v in avg["model"].items():
        if v.is_floating_point():
            assert torch.allclose(v, (w1[k] + w2[k]) / 2, atol=1e-6), k
        else:
            assert torch.equal(v, w2[k]), k


def test_running_average_matches_numpy():
    rng = np.random.default_rng(0)
    states = [{"w": torch.tensor(rng.normal(size=5), dtype=torch.float32), "n": torch.tensor(i)} for i in range(4)]
    avg = RunningAverage()
    for i, s in enumerate(states):
        avg.add(s, i)
    mean = avg.state_dict_like(states[0])
    np.testing.assert_allclose(mean["w"].numpy(), np.mean([s["w"].numpy() for s in states], 0), rtol=1e-6)
    assert mean["w"].dtype == torch.float32 and int(mean["n"]) == 3 and avg.epochs == [0, 1, 2, 3]


def test_batchnorm_is_re_estimated_as_the_plain_mean_over_batches():
    from submission.methods.adabn import recompute_batchnorm

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(3)

        def predict(self, x):
            return self.bn(x)

    net = Net()
    net.eval()
    net.bn.running_mean.fill_(7.0)
    batches = [torch.randn(8, 3) * (i + 1) + i for i in range(4)]
    assert recompute_batchnorm(net, iter(batches), "cpu") == 4
    torch.testing.assert_close(net.bn.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))
    torch.testing.assert_close(net.bn.running_var, torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0))
    assert net.bn.momentum == 0.1 and not net.training


def test_resume_refuses_other_settings(tiny, tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    fit(cfg)
    with pytest.raises(KitError, match="lr"):
        fit(tiny(tmp_path, lr=0.1, epochs=2), resume=True)


def test_guard_keeps_collapsed_and_undecided_models_from_winning():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(200, 11)) * 8  # confident, all classes
    collapsed = np.tile(good[:1], (200, 1))
    undecided = rng.normal(size=(200, 11)) * 0.01  # near-uniform softmax
    rows = {n: target_scores(l, CLASSES, 0.005, 6, 0.5)
            for n, l in (("good", good), ("collapsed", collapsed), ("undecided", undecided))}
    assert rows["collapsed"]["target_snd"] > rows["good"]["target_snd"]
    assert rows["undecided"]["target_snd"] > rows["good"]["target_snd"]
    assert rows["good"]["target_guard_ok"] == 1
    assert rows["collapsed"]["target_guard_ok"] == 0 and rows["undecided"]["target_guard_ok"] == 0
    assert max(rows.values(), key=selection_key) is rows["good"]


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": 2, "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(KitError, match="not a loadable kit checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_checkpoint_expectations_name_the_difference(tiny, tmp_path):
    fit(tiny(tmp_path, epochs=1))
    with pytest.raises(KitError, match="image_size is 32, expected 224"):
        load_checkpoint(tmp_path / "seed0/best.pt", expect={"image_size": 224})


def test_channels_last_agrees_with_plain_fp32():
    """The kit's CPU speed switch changes the memory layout only: same losses and weights within float noise."""
    from submission.methods.model import MDDNet, to_device
    from submission.train.step import train_step

    x_s, x_t, y = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32), torch.randint(0, 11, (8,))
    runs = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = MDDNet(11, 64, 64)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9, nesterov=True)
        losses = []
        for k in range(4):
            torch.manual_seed(100 + k)  # the same dropout masks on both sides
            out = train_step(model, to_device(x_s, "cpu", channels_last), y, to_device(x_t, "cpu", channels_last),
                             opt, 0.1, make_config(trade_off=1.0, mcc_weight=0.0, target_in_batch=True))
            losses.append([float(out["cls_loss"]), float(out["transfer_loss"])])
        runs[channels_last] = (np.array(losses), [p.detach().clone() for p in model.parameters()])
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    for a, b in zip(runs[True][1], runs[False][1]):
        assert torch.allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------- recipes and schedules


def test_seed_recipe_runs_with_the_write_ups_schedule_and_its_lr_drops(tiny, tmp_path):
    cfg = tiny(tmp_path, recipe="seed", epochs=5)
    assert cfg.lr == 0.001 and cfg.class_weighted_loss and not cfg.balanced and cfg.lr_schedule == "step"
    fit(cfg)
    config = json.loads((tmp_path / "seed0/config.json").read_text())
    assert config["recipe"] == "seed" and config["lr_schedule"] == "step" and config["lr_steps"] == [0.4, 0.8]
    assert config["class_weighted_loss"] is True and config["balanced"] is False and config["select"] == "snd"
    lr = pd.read_csv(tmp_path / "seed0/metrics.csv")["lr"].to_numpy()  # the last step's lr of each epoch
    # 15 steps: x0.1 from step 6 (40%) and again from step 12 (80%)
    np.testing.assert_allclose(lr, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5], rtol=1e-9)


def test_source_only_recipe_uses_no_target_image(tiny, tmp_path):
    cfg = tiny(tmp_path, recipe="source-only")
    assert cfg.trade_off == 0 and not cfg.target_in_batch and cfg.target_norm == "source" and cfg.select == "source-val"
    fit(cfg)
    metrics = pd.read_csv(tmp_path / "seed0/metrics.csv")
    assert [c for c in metrics if c.endswith("_loss")] == ["cls_loss"]
    ckpt = load_checkpoint(tmp_path / "seed0/best.pt")
    norm = ckpt["normalization"]
    for k in ("mean", "std"):
        np.testing.assert_allclose(norm["WBC1"][k], np.mean([norm["Acevedo_20"][k], norm["Matek_19"][k]], 0), atol=1e-6)
    assert ckpt["selected_by"] == "source-val"
    best = metrics.loc[metrics["source_val_f1"].idxmax(), "epoch"]
    assert ckpt["epoch"] == best


def test_recipes_and_the_demo_preset_fill_only_what_is_not_given(tmp_path):
    cfg = make_config(None, True, epochs=3, seed=2)
    assert cfg.epochs == 3 and cfg.seed == 2 and cfg.image_size == 64 and cfg.pretrained is False
    assert cfg.backbone_lr_mult == 1.0  # from scratch: the backbone learns at the head's rate
    full = make_config()
    assert full.image_size == 224 and full.pretrained and full.epochs == 50 and full.backbone_lr_mult == 0.1
    seed_demo = make_config("seed", True)
    assert seed_demo.epochs == 8 and seed_demo.lr == 0.001 and seed_demo.image_size == 64
    assert make_config("seed", lr=0.01).lr == 0.01
    assert make_config("source-only").mcc_weight == 0.0 and make_config("mcc").mcc_weight == 1.0
    kit = make_config("kit")  # the stress study's choice: source-only training, the target's own normalisation
    assert kit.adapt == "own" and kit.target_norm == "own" and not kit.target_in_batch and kit.mcc_weight == 0.0
    assert kit.select == "source-val" and make_config() == kit and make_config("source-only").adapt == "source"
    assert make_config("adabn").adapt == "adabn" and make_config("adabn").select == "last"
    # earlier versions' settings in today's words; a normalisation treatment follows --target-norm
    assert make_config(adabn=True, bn_balance=True).adapt == "adabn-balanced" and make_config(prior_em=True).adapt == "prior"
    assert make_config("source-only", target_norm="own").adapt == "own"
    assert make_config("adabn", target_norm="own").adapt == "adabn"
    assert make_config(adapt="source").target_norm == "source"
    assert make_config("seed").trade_off == 1.0 and make_config("seed").mcc_weight == 0.0
    with pytest.raises(KitError, match="unknown recipe"):
        make_config("fancy")
    with pytest.raises(KitError, match="lr-schedule"):
        make_config(lr_schedule="linear")


def test_a_recorded_config_reruns_the_run(tiny, tmp_path):
    cfg = tiny(tmp_path, recipe="seed", epochs=1, lr=0.003)
    fit(cfg)
    again = make_config(config_file=tmp_path / "seed0/config.json", runs=str(tmp_path / "again"))
    assert again.lr == 0.003 and again.recipe == "seed" and again.lr_steps == (0.4, 0.8) and again.epochs == 1
    fit(again)
    a = pd.read_csv(tmp_path / "seed0/metrics.csv")
    b = pd.read_csv(tmp_path / "again/seed0/metrics.csv")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("schedule,step,expected", [
    ("inv", 0, 0.004),
    ("inv", 1000, 0.004 * 1.2 ** -0.75),  # 0.0034896...
    ("inv", 5000, 0.004 * 2.0 ** -0.75),
    ("step", 399, 0.004), ("step", 400, 0.0004), ("step", 799, 0.0004), ("step", 800, 0.00004),
    ("cosine", 0, 0.004), ("cosine", 500, 0.002), ("cosine", 1000, 0.0), ("cosine", 250, 0.004 * (1 + math.sqrt(0.5)) / 2),
])
def test_lr_schedules_known_values(schedule, step, expected):
    from submission.train.step import lr_at

    cfg = make_config(lr_schedule=schedule)
    assert lr_at(step, 1000, cfg) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert make_config(lr_schedule="cosine", lr_min_frac=0.1).lr * 0.1 == pytest.approx(
        lr_at(1000, 1000, make_config(lr_schedule="cosine", lr_min_frac=0.1)))
