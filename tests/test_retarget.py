"""--init RUN --epochs 0: a run's weights re-targeted to another lab (scored there, AdaBN re-estimated there) equal
a full run on that lab whenever the recipe's weights never see the target (kit, adabn, source-only, own-norm)."""

import dataclasses

import numpy as np

import pytest
import torch

from submission.config import make_config
from submission.errors import KitError
from submission.train.checkpoint import load_checkpoint
from submission.train.loop import fit


@pytest.mark.parametrize("recipe", ["kit", "adabn"])
def test_retargeting_a_run_equals_a_full_run_on_the_other_target(recipe, tiny, tmp_path):
    first = dataclasses.replace(tiny(tmp_path / "a", recipe=recipe, target="WBC1"), epochs=2)
    fit(first)
    full = dataclasses.replace(tiny(tmp_path / "b", recipe=recipe, target="WBC2"), epochs=2)
    fit(full)
    moved = make_config(init=str(first.run_dir), epochs=0, target="WBC2", runs=str(tmp_path / "c"))
    assert moved.recipe == recipe and moved.epochs == 0
    fit(moved)
    a, b, c = (load_checkpoint(cfg.run_dir / "best.pt") for cfg in (first, full, moved))
    assert all(torch.equal(b["model"][k], c["model"][k]) for k in b["model"])
    assert b["normalization"] == c["normalization"]
    if recipe == "kit":  # the target's own statistics: WBC2's, not WBC1's
        assert c["normalization"]["WBC2"] != a["normalization"]["WBC1"]
    else:
        bn = lambda ckpt: ckpt["treatments"]["adabn"]["bn"]
        assert all(torch.equal(bn(b)[k], bn(c)[k]) for k in bn(b))
        assert any(not torch.equal(bn(a)[k], bn(c)[k]) for k in bn(c))
    with pytest.raises(KitError, match="0 only with --init"):
        make_config(epochs=0)


def test_balanced_weights_move_the_estimated_prior_to_a_uniform_one():
    import numpy as np

    from submission.methods.adapt.adabn_balanced import balanced_weights

    labels = np.array([0] * 12 + [1] * 3 + [2] * 1)
    probs = np.eye(3)[labels]  # confident predictions: the weights are 1 / prior of the class
    prior = np.bincount(labels) / len(labels)
    w = balanced_weights(probs, prior, floor=1e-6)
    assert w.sum() == pytest.approx(1.0)
    assert np.allclose([w[labels == c].sum() for c in range(3)], 1 / 3)
    soft = np.full((4, 3), 1 / 3)  # no information: every image alike
    assert np.allclose(balanced_weights(soft, [0.5, 0.3, 0.2], 1e-6), 0.25)


def test_the_adabn_guards_change_the_statistics_and_inference_follows_them(tiny, tmp_path):
    from submission.data.targets import Target
    from submission.predict.inference import predict_run

    base = dataclasses.replace(tiny(tmp_path / "a", recipe="adabn"), epochs=1)
    fit(base)
    plain = load_checkpoint(base.run_dir / "best.pt")
    balanced = make_config(init=str(base.run_dir), epochs=0, adapt="adabn-balanced", runs=str(tmp_path / "bal"))
    fit(balanced)
    bal = load_checkpoint(balanced.run_dir / "best.pt")
    assert all(torch.equal(plain["model"][k], bal["model"][k]) for k in plain["model"])
    bn = lambda ckpt, name: ckpt["treatments"][name]["bn"]
    assert any(not torch.equal(bn(plain, "adabn")[k], bn(bal, "adabn-balanced")[k]) for k in bn(bal, "adabn-balanced"))
    small = make_config(init=str(base.run_dir), epochs=0, bn_min_images=10_000, runs=str(tmp_path / "small"))
    fit(small)
    kept = load_checkpoint(small.run_dir / "best.pt")
    assert bn(kept, "adabn") is None and kept["config"]["adapt"] == "adabn"
    target = Target.from_split("WBC2", base.data_root)
    opts = dict(tta=False, device="cpu", cache_dir=base.cache_dir, batch_size=16)
    stored = predict_run(kept, target, **opts)  # no stored statistics: the training ones
    assert np.allclose(stored, predict_run(plain, target, adapt="source", **opts), atol=1e-5)
    wbc1 = Target.from_split("WBC1", base.data_root)  # the run's target: refit keeps the run's guard, as stored
    refit = predict_run(bal, wbc1, refit=True, **opts)
    assert np.allclose(refit, predict_run(bal, wbc1, **opts), atol=1e-4)
    assert not np.allclose(refit, predict_run(plain, wbc1, refit=True, **opts), atol=1e-3)
