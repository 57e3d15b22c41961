"""Runs with a ViT from a DinoBloom file (random weights): fine-tuned with MDD, resumed, predicted with TTA,
under torchrun, and frozen on cached features."""

import numpy as np
import pytest
import torch
from backbone_files import write_dinobloom

from submission.data.targets import Target
from submission.methods import weights
from submission.predict.inference import predict_run
from submission.train import features
from submission.train.checkpoint import load_checkpoint, model_from_checkpoint
from submission.train.loop import fit

pytest.importorskip("timm")
VIT_S = "timm:vit_small_patch14_dinov2"


@pytest.fixture(scope="module")
def dinobloom_s(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "DinoBloom-S.pth"
    return path, write_dinobloom(path, "S", seed=4)


def vit_config(tiny, out, path, **kw):
    return tiny(out, backbone=VIT_S, weights=str(path), image_size=28, **kw)


def wbc1(demo):
    return Target.resolve("WBC1", demo / "data", demo / "data" / "splits", None, None)


def test_mdd_fine_tunes_a_dinobloom_vit_and_predicts_from_the_checkpoint_alone(tiny, demo, tmp_path, dinobloom_s):
    path, state = dinobloom_s
    fit(vit_config(tiny, tmp_path, path, recipe="seed", epochs=1, iters_per_epoch=2, lr_schedule="inv"))
    ckpt = load_checkpoint(tmp_path / "seed0" / "best.pt")
    assert ckpt["arch"]["backbone"] == VIT_S and ckpt["arch"]["input_size"] == ckpt["image_size"] == 28
    assert ckpt["weights"] == {"file": "DinoBloom-S.pth", "sha256": weights.file_hash(path), "format": "DinoBloom (teacher)"}
    assert ckpt["config"]["adapt"] == "own" and ckpt["config"]["input_norm"] == "weights"
    assert ckpt["normalization"]["Acevedo_20"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    trained = ckpt["model"]
    assert not torch.equal(trained["backbone.blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])  # it learned
    assert trained["backbone.pos_embed"].shape == (1, 1 + 2 * 2, 384)  # 16 x 16 resampled to the 28 px grid
    model = model_from_checkpoint(ckpt)
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    logits = predict_run(ckpt, wbc1(demo), tta=True, device="cpu", cache_dir=str(tmp_path / "cache"))
    assert logits.shape == (30, 11) and np.isfinite(logits).all()


def test_a_vit_run_resumes_to_the_same_weights(tiny, tmp_path, dinobloom_s):
    path, _ = dinobloom_s
    fit(vit_config(tiny, tmp_path / "full", path, epochs=2, iters_per_epoch=2, dropout=0.0))
    fit(vit_config(tiny, tmp_path / "part", path, epochs=1, iters_per_epoch=2, dropout=0.0))
    fit(vit_config(tiny, tmp_path / "part", path, epochs=2, iters_per_epoch=2, dropout=0.0), resume=True)
    a = load_checkpoint(tmp_path / "full" / "seed0" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "seed0" / "last.pt")["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_frozen_features_are_cached_once_and_the_checkpoint_predicts_images_as_the_cache_did(
        tiny, demo, tmp_path, dinobloom_s, monkeypatch):
    path, state = dinobloom_s
    cfg = vit_config(tiny, tmp_path, path, freeze_backbone=True, feature_views=4, fast=False, trade_off=1.0)
    fit(cfg)
    cache = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert [p.name.split("-")[0] for p in cache] == ["Acevedo_20", "Matek_19", "WBC1"]
    shapes = [np.load(p, mmap_mode="r").shape for p in cache]
    assert all(s[1:] == (5, 384) for s in shapes)  # the evaluation view and 4 augmented views, all images
    ckpt = load_checkpoint(tmp_path / "seed0" / "last.pt")
    assert all(torch.equal(ckpt["model"][f"backbone.{k}"], v) for k, v in state.items() if k != "pos_embed")
    # the checkpoint predicts from images what training scored from the cache (fp32 both ways)
    cached = np.load(tmp_path / "seed0" / "target_logits" / "epoch001.npy")
    from_images = predict_run(ckpt, wbc1(demo), tta=False, device="cpu", cache_dir=str(tmp_path / "cache"))
    np.testing.assert_allclose(from_images, cached, atol=1e-3 * np.abs(cached).max() + 1e-5)
    feats = np.load(cache[0])
    augmented = np.abs(feats[:, 1:]).sum((1, 2)) > 0
    assert 0 < augmented.sum() < len(feats)  # the held-out fold's rows get no augmented views: training never draws them
    row = int(np.flatnonzero(augmented)[0])
    views = features.FeatureViews(feats, [row], [0], train=True)
    drawn = {int(np.flatnonzero((feats[row] == views.sample(0, s)[0].numpy().astype(np.float16)).all(1))[0])
             for s in range(40)}
    assert drawn == {1, 2, 3, 4}  # a training draw takes an augmented view, never the evaluation one
    fit(vit_config(tiny, tmp_path / "kit", path, freeze_backbone=True, recipe="kit", cache_dir=str(tmp_path / "cache")))
    target = [p for p in (tmp_path / "cache" / "features").glob("WBC1-*.npy") if p not in cache]
    assert [np.load(p, mmap_mode="r").shape for p in target] == [(30, 1, 384)]  # no target batches: no target views
    class Extracted(Exception):
        pass

    def stub(*args, **kwargs):
        raise Extracted

    monkeypatch.setattr(features, "extract", stub)
    fit(vit_config(tiny, tmp_path, path, freeze_backbone=True, feature_views=4, fast=False, trade_off=1.0, seed=1))
    # a second seed read the cache; other views are another key, so a new extraction
    with pytest.raises(Extracted):
        fit(vit_config(tiny, tmp_path, path, freeze_backbone=True, feature_views=2, fast=False, seed=2))


def test_two_processes_fine_tune_a_vit(demo, tmp_path, dinobloom_s):
    from test_distributed import torchrun

    path, _ = dinobloom_s
    torchrun(demo, tmp_path / "runs", 1, "--backbone", VIT_S, "--weights", str(path), "--image-size", "28",
             recipe="seed")
    ckpt = load_checkpoint(tmp_path / "runs" / "seed0" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["arch"]["backbone"] == VIT_S
    assert ckpt["weights"]["sha256"] == weights.file_hash(path)


@pytest.mark.parametrize("model", ["convnext_atto", "efficientnet_b0"])
def test_a_timm_convnet_trains_and_predicts(tiny, demo, tmp_path, model):
    from backbone_files import write_timm

    write_timm(tmp_path / f"{model}.pth", model, seed=6)  # with its classifier, as timm saves one
    fit(tiny(tmp_path, backbone=f"timm:{model}", weights=str(tmp_path / f"{model}.pth"), recipe="adabn", epochs=1,
             iters_per_epoch=2))
    ckpt = load_checkpoint(tmp_path / "seed0" / "best.pt")
    assert ckpt["image_size"] == 32 and ckpt["config"]["input_norm"] == "weights"
    # AdaBN where the backbone has BatchNorm, else the recipe's normalisation of the target (the sources')
    assert ckpt["config"]["adapt"] == ("adabn" if model == "efficientnet_b0" else "source")
    assert list(ckpt["treatments"]) == [ckpt["config"]["adapt"]]
    assert (ckpt["treatments"][ckpt["config"]["adapt"]]["bn"] is not None) is (model == "efficientnet_b0")
    logits = predict_run(ckpt, wbc1(demo), tta=True, device="cpu", cache_dir=str(tmp_path / "cache"))
    assert logits.shape == (30, 11) and np.isfinite(logits).all()


def test_a_wrong_file_is_one_line_from_train_py(demo, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from backbone_files import write_torchvision

    write_torchvision(tmp_path / "resnet18.pth")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "train.py", "--demo", "--data-root", str(demo / "data"), "--runs",
                           str(tmp_path / "runs"), "--backbone", VIT_S, "--weights", str(tmp_path / "resnet18.pth")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not fit --backbone timm:vit_small_patch14_dinov2" in errors[0], done.stderr
