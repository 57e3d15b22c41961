"""The adaptation methods against naive references: MCC, AdaBN, EM prior correction, recolouring, HED
jitter, MixVal; and each as a setting of one training run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from submission.methods.adabn import batchnorm_state, target_batchnorm
from submission.methods.colour import HEDJitter, colour_stats, hed_to_rgb, recolour, rgb_to_hed
from submission.methods.diversity import diversity_loss
from submission.methods.im import im_loss
from submission.methods.mcc import mcc_loss
from submission.methods.prior import corrected_logits, em_prior
from submission.methods.registry import TERMS
from submission.scoring.mixval import mixval
from submission.train.checkpoint import load_checkpoint
from submission.train.loop import fit


def test_mcc_loss_matches_a_per_sample_loop():
    torch.manual_seed(0)
    z = torch.randn(6, 4) * 3
    T, B, K = 2.5, 6, 4
    p = [[math.exp(z[i, k] / T) for k in range(K)] for i in range(B)]
    p = [[v / sum(row) for v in row] for row in p]
    H = [-sum(v * math.log(v + 1e-5) for v in row) for row in p]
    w = [1 + math.exp(-h) for h in H]
    w = [B * v / sum(w) for v in w]
    C = [[sum(w[i] * p[i][a] * p[i][b] for i in range(B)) for b in range(K)] for a in range(K)]
    col = [sum(C[a][b] for a in range(K)) for b in range(K)]
    naive = sum(C[a][b] / col[b] for a in range(K) for b in range(K) if a != b) / K
    assert float(mcc_loss(z, T)) == pytest.approx(naive, rel=1e-5)


def test_mcc_loss_is_zero_for_confident_one_hot_predictions_of_distinct_classes():
    z = torch.eye(4) * 100
    assert float(mcc_loss(z, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(mcc_loss(torch.zeros(4, 4), 1.0)) > 0.5  # uniform predictions confuse every class


def _softmax_rows(z):
    rows = [[math.exp(v) for v in row] for row in z.tolist()]
    return [[v / sum(row) for v in row] for row in rows]


def test_im_and_diversity_losses_match_per_sample_loops():
    torch.manual_seed(1)
    z = torch.randn(7, 5) * 2
    p = _softmax_rows(z)
    p_bar = [sum(row[k] for row in p) / len(p) for k in range(5)]
    diversity = sum(v * math.log(v + 1e-5) for v in p_bar)
    entropy = sum(-sum(v * math.log(v + 1e-5) for v in row) for row in p) / len(p)
    assert diversity_loss(z).item() == pytest.approx(diversity, abs=1e-5)
    assert im_loss(z).item() == pytest.approx(entropy + diversity, abs=1e-5)


def test_diversity_is_lowest_for_predictions_spread_over_the_classes():
    even = torch.eye(4) * 20  # one confident prediction per class
    collapsed = torch.zeros(4, 4)
    collapsed[:, 0] = 20  # every image the same class
    assert diversity_loss(even).item() == pytest.approx(-math.log(4), abs=1e-3)
    assert diversity_loss(collapsed).item() == pytest.approx(0.0, abs=1e-3)
    assert im_loss(even).item() < im_loss(collapsed).item() and im_loss(even).item() < im_loss(torch.zeros(4, 4)).item()


def test_em_prior_recovers_a_known_mixture():
    # two 1-d Gaussian classes; the classifier's posteriors are exact for a 50/50 training prior
    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.2).astype(int)  # target prior 0.8 / 0.2
    x = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    like = np.stack([np.exp(-(x + 1) ** 2 / 2), np.exp(-(x - 1) ** 2 / 2)], 1)
    post = like / like.sum(1, keepdims=True)
    adjusted, prior = em_prior(post, [0.5, 0.5])
    assert prior == pytest.approx([0.8, 0.2], abs=0.02)
    truth = like * [0.8, 0.2]
    assert np.abs(adjusted - truth / truth.sum(1, keepdims=True)).max() < 0.02
    # a class the model never saw stays at 0; logits in, logits out
    z = corrected_logits(np.log(np.c_[post, np.full(len(post), 1e-9)]), [0.5, 0.5, 0.0])
    assert np.exp(z)[:, 2].max() < 1e-6 and np.allclose(np.exp(z).sum(1), 1, atol=1e-5)


class _BN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3)
        self.drop = torch.nn.Dropout(0.5)

    def predict(self, x):
        return self.drop(self.bn(x)).mean((2, 3))


def test_adabn_statistics_are_the_mean_of_the_target_batches_and_the_model_keeps_its_own():
    torch.manual_seed(0)
    model = _BN()
    model.bn.running_mean.fill_(7.0)
    batches = [torch.randn(5, 3, 4, 4) * 2 + 1, torch.randn(5, 3, 4, 4) - 3]
    state = target_batchnorm(model, batches, torch.device("cpu"))
    means = [b.permute(1, 0, 2, 3).reshape(3, -1).mean(1) for b in batches]
    varis = [b.permute(1, 0, 2, 3).reshape(3, -1).var(1, unbiased=True) for b in batches]
    assert torch.allclose(state["bn.running_mean"], (means[0] + means[1]) / 2, atol=1e-5)
    assert torch.allclose(state["bn.running_var"], (varis[0] + varis[1]) / 2, atol=1e-5)
    assert torch.all(model.bn.running_mean == 7.0)  # the model's own statistics are untouched
    assert set(batchnorm_state(model)) == {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}


def test_recolouring_moves_each_part_to_the_target_statistics_and_hed_round_trips():
    from submission.data.transforms import prepare
    from submission.demo.cells import DOMAINS, render_cell

    src = prepare(render_cell("lymphocyte_typical", DOMAINS["Acevedo_20"], np.random.default_rng(0)), 250, 73)
    tgt = prepare(render_cell("monocyte", DOMAINS["WBC"], np.random.default_rng(1)), 288, 73)
    want = colour_stats(tgt)
    before, after = colour_stats(src), colour_stats(recolour(src, want))
    # the L*a*b* means of the nucleus part and of the rest move to the target's (the rest within a unit;
    # the dark part re-splits once its L* changes, so within a third of the distance it started at)
    assert np.abs(after[1, 0] - want[1, 0]).max() < 1.5
    assert np.all(np.abs(after[0, 0] - want[0, 0]) <= np.maximum(0.35 * np.abs(before[0, 0] - want[0, 0]), 3.5))
    assert np.abs(before[:, 0] - want[:, 0]).max() > 25
    img = np.random.default_rng(0).integers(30, 250, (16, 16, 3)).astype(np.uint8)
    assert np.abs(hed_to_rgb(rgb_to_hed(img)).astype(int) - img).max() <= 1
    jitter = HEDJitter(0.05, p=1.0)
    jitter.set_random_seed(0)
    moved = jitter(image=img)["image"]
    assert moved.shape == img.shape and 0 < np.abs(moved.astype(int) - img).mean() < 20


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(12, 3))

    def predict(self, x):
        return x.flatten(1) @ self.w


def test_mixval_matches_a_naive_loop():
    torch.manual_seed(0)
    model = _Linear()
    x = torch.randn(40, 3, 2, 2)
    pseudo = model.predict(x).argmax(1).numpy()
    score = mixval(model, x, pseudo, torch.device("cpu"), lam=0.55, seed=3, batch_size=7)
    partner = np.random.default_rng(3).permutation(40)
    hits = tries = 0
    for i in range(40):
        j = partner[i]
        if pseudo[i] != pseudo[j]:
            tries += 1
            hits += int(model.predict(0.55 * x[i : i + 1] + 0.45 * x[j : j + 1]).argmax(1).item() == pseudo[i])
    assert tries > 10 and score == pytest.approx(hits / tries)
    assert math.isnan(mixval(model, x, np.zeros(40, int), torch.device("cpu")))


def test_methods_are_settings_of_one_run(tmp_path, tiny):
    from submission.data.targets import Target
    from submission.predict.inference import predict_run

    cfg = tiny(tmp_path / "a", adapt="adabn", mcc_weight=1.0, colour_aug=0.5, stain_jitter=0.05,
               watch_split="WBC2", select="avg")
    fit(cfg, overwrite=True)
    m = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert (m["mcc_loss"] > 0).all() and m["target_mixval"].between(0, 1).all()
    assert len(list((cfg.run_dir / "watch_logits").glob("epoch*.npy"))) == cfg.epochs
    best, avg = load_checkpoint(cfg.run_dir / "best.pt"), load_checkpoint(cfg.run_dir / "avg.pt")
    assert best["selected_by"] == "avg" and all(torch.equal(best["model"][k], avg["model"][k]) for k in avg["model"])
    bn = best["treatments"]["adabn"]["bn"]
    assert not torch.allclose(bn["backbone.bn1.running_mean"], best["model"]["backbone.bn1.running_mean"])
    target = Target.from_split("WBC1", cfg.data_root)
    common = dict(tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=2 * cfg.batch_size)
    stored, refit, off = (predict_run(best, target, **common), predict_run(best, target, refit=True, **common),
                          predict_run(best, target, adapt="own", **common))
    assert np.allclose(stored, refit, atol=1e-4)  # the stored statistics are WBC1's
    assert not np.allclose(stored, off, atol=1e-3)
    corrected = predict_run(best, target, adapt="prior", **common)
    assert np.allclose(np.exp(corrected).sum(1), 1, atol=1e-4) and not np.allclose(corrected, stored)


def test_mcc_needs_the_target_in_the_batch(tmp_path, tiny):
    from submission.errors import KitError

    for name in [t.weight for t in TERMS if t.needs_target]:
        with pytest.raises(KitError, match="target-in-batch"):
            tiny(tmp_path, **{name: 1.0}, target_in_batch=False)


def test_im_diversity_and_strong_augmentation_are_settings_of_one_run(tmp_path, tiny):
    cfg = tiny(tmp_path / "a", mcc_weight=0.0, im_weight=1.0, div_weight=0.5, strong_aug=True)
    fit(cfg, overwrite=True)
    m = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert m["im_loss"].notna().all() and m["div_loss"].notna().all() and "mcc_loss" not in m


def test_strong_augmentation_adds_hue_noise_and_jpeg():
    from submission.data.transforms import train_transform

    names = lambda t: [type(x).__name__ for x in t.transforms]
    plain, strong = train_transform(32, [0.5] * 3, [0.2] * 3), train_transform(32, [0.5] * 3, [0.2] * 3, strong=True)
    assert {"GaussNoise", "ImageCompression", "HEDJitter"} <= set(names(strong)) - set(names(plain))
    jitter = [x for x in strong.transforms if type(x).__name__ == "ColorJitter"][0]
    assert tuple(jitter.hue) == pytest.approx((-0.08, 0.08))
    img = np.random.default_rng(0).integers(0, 255, (36, 36, 3), dtype=np.uint8)
    assert strong(image=img)["image"].shape == (32, 32, 3)
