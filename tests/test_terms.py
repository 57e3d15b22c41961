"""Every registered adaptation term and every recipe, by one parametrised test each (as DomainBed's
test_models.py): a term is one file in methods/ plus one line in methods/registry.py, and nothing else
in the kit or its tests names it."""

import dataclasses
import math
import sys

import pandas as pd
import pytest
import torch

from submission.cli import PANEL_OF
from submission.config import FIELDS, make_config
from submission.recipes import RECIPES
from submission.methods.model import MDDNet
from submission.methods.registry import TERMS, active_terms
from submission.train.step import train_step


def _step(cfg, seed=0):
    torch.manual_seed(seed)
    model = MDDNet(11, 16, 16, dropout=0.0)
    opt = torch.optim.SGD(model.param_groups(0.0), lr=0.0)  # lr 0: gradients are kept, weights unchanged
    x_s, x_t, y_s = torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32) * 1.5 + 0.5, torch.randint(0, 11, (6,))
    losses = train_step(model, x_s, y_s, x_t if cfg.target_in_batch else None, opt, 0.5, cfg)
    return model, losses


@pytest.mark.parametrize("term", TERMS, ids=lambda t: t.name)
def test_a_term_alone_is_finite_and_every_parameter_that_should_learn_gets_a_gradient(term):
    cfg = make_config("kit", **{term.weight: 1.0}, target_in_batch=term.needs_target, pretrained=False)
    assert [t.name for t in active_terms(cfg)] == [term.name]
    model, losses = _step(cfg)
    assert set(losses) == {"cls_loss", term.column} and all(math.isfinite(float(v)) for v in losses.values())
    trained = [model.backbone, model.bottleneck, model.head] + ([model.adv_head] if term.trains_adversary else [])
    for part in trained:
        for name, p in part.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{term.name}: {name} got no gradient"
    if not term.trains_adversary:  # the adversarial head learns from nothing else
        assert all(p.grad is None or not p.grad.any() for p in model.adv_head.parameters())


@pytest.mark.parametrize("term", TERMS, ids=lambda t: t.name)
def test_a_term_declares_its_settings_once_and_they_reach_the_config_and_the_cli(term):
    for s in term.settings:
        f = FIELDS[s.name]
        assert f.default == s.default and f.metadata["help"] == s.help and PANEL_OF[s.name] == "Adaptation"
    assert getattr(make_config("kit"), term.weight) == 0  # off in the kit's recipe
    assert getattr(make_config("source-only"), term.weight) == 0
    cfg = make_config("kit", **{term.weight: 0.5}, target_in_batch=True, pretrained=False)
    assert term.own(cfg).__dict__[term.weight] == 0.5


def test_terms_are_named_once():
    for attr in ("name", "column", "weight"):
        values = [getattr(t, attr) for t in TERMS]
        assert len(set(values)) == len(values), attr


def test_the_weights_of_active_terms_scale_their_losses():
    """weight x loss is what the step adds: doubling a term's weight doubles its share of the gradient."""
    term = next(t for t in TERMS if t.name == "mcc")
    grads = []
    for w in (1.0, 2.0):
        model, _ = _step(make_config("kit", **{term.weight: w}, target_in_batch=True, pretrained=False))
        base, _ = _step(make_config("kit", target_in_batch=True, pretrained=False))
        grads.append(model.head[0].weight.grad - base.head[0].weight.grad)
    torch.testing.assert_close(grads[1], 2 * grads[0], rtol=1e-4, atol=1e-7)


def test_config_imports_no_torch():
    import subprocess

    code = "import sys, submission.config, submission.methods.registry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_every_recipe_trains_two_steps_then_predicts(recipe, tiny, tmp_path):
    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint
    from submission.train.loop import fit

    cfg = tiny(tmp_path, recipe=recipe, epochs=1, iters_per_epoch=2, val_fold=0)
    cfg = dataclasses.replace(cfg, epochs=1)
    fit(cfg)
    metrics = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert [c for c in metrics if c.endswith("_loss")] == ["cls_loss"] + [t.column for t in active_terms(cfg)]
    best = load_checkpoint(cfg.run_dir / "best.pt")
    logits = predict_run(best, Target.from_split("WBC2", cfg.data_root), tta=False, device="cpu",
                         cache_dir=cfg.cache_dir, batch_size=16)
    assert logits.shape[1] == 11 and torch.isfinite(torch.as_tensor(logits)).all()
