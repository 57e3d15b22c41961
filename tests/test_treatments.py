"""Test-time treatments (methods/adapt): each one fitted on a tiny run's target, stored in a checkpoint, loaded and
applied; output treatments against naive references; early-layer AdaBN touches only the early statistics; the loop,
evaluation, checkpointing and inference never name a treatment."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from submission.data.targets import Target
from submission.methods import adapt
from submission.methods.adabn import batchnorm_state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def kit_run(demo, tmp_path_factory):
    """A tiny run of the kit's recipe (the target normalised by its own statistics, no AdaBN)."""
    from conftest import tiny_config
    from submission.train.loop import fit

    cfg = dataclasses.replace(tiny_config(demo, tmp_path_factory.mktemp("kit"), recipe="kit"), epochs=1)
    fit(cfg)
    return cfg


def _opts(cfg):
    return dict(tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=16)


@pytest.mark.parametrize("name", adapt.NAMES)
def test_every_treatment_fits_stores_loads_and_applies(kit_run, tmp_path, name):
    from submission.data.files import save_torch
    from submission.predict.inference import fit_states, predict_run, predict_treatments
    from submission.train.checkpoint import load_checkpoint

    best = load_checkpoint(kit_run.run_dir / "best.pt")
    target = Target.from_split("WBC1", Path(kit_run.data_root))
    states = fit_states(best, target, [name], device="cpu", cache_dir=kit_run.cache_dir, batch_size=16)
    assert set(states) == {t.name for t in adapt.order([name]) if t.forward}
    for state in states.values():
        assert set(state) == {"norm", "bn", "note"} and len(state["norm"]["mean"]) == 3
    save_torch(tmp_path / "treated.pt", {**best, "config": {**best["config"], "adapt": name}, "treatments": states})
    stored = load_checkpoint(tmp_path / "treated.pt")  # weights_only: the states are plain tensors and values
    z = predict_run(stored, target, **_opts(kit_run))
    assert z.shape == (len(target.images), 11) and np.isfinite(z).all()
    refit = predict_treatments(stored, target, [name], refit=True, **_opts(kit_run))
    np.testing.assert_allclose(z, refit.logits[name], atol=1e-4)  # stored on WBC1 = fitted on WBC1 again
    assert "fitted on these" in refit.info[name]["fitted"] or not adapt.get(name).forward


def test_the_output_treatments_equal_their_naive_references(kit_run):
    from submission.methods.prior import em_prior
    from submission.predict.inference import predict_treatments
    from submission.train.checkpoint import load_checkpoint

    best = load_checkpoint(kit_run.run_dir / "best.pt")
    out = predict_treatments(best, Target.from_split("WBC1", Path(kit_run.data_root)), ["prior", "mix"],
                             **_opts(kit_run))
    assert set(out.logits) == {"own", "source", "adabn", "prior", "mix"}  # one forward pass each for the three
    probs = {n: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
             for n, z in out.logits.items()}
    mean = sum(probs[n] for n in ("own", "source", "adabn")) / 3
    np.testing.assert_allclose(probs["mix"], mean, atol=1e-5)
    adjusted, prior = em_prior(probs["own"], best["train_prior"])
    np.testing.assert_allclose(probs["prior"], adjusted, atol=1e-5)
    np.testing.assert_allclose(out.info["prior"]["prior"], prior, atol=1e-5)


def test_own_and_source_differ_only_in_the_normalisation_and_adabn_in_the_statistics(kit_run):
    from submission.predict.inference import fit_states, source_norm
    from submission.train.checkpoint import load_checkpoint

    best = load_checkpoint(kit_run.run_dir / "best.pt")
    states = fit_states(best, Target.from_split("WBC1", Path(kit_run.data_root)), adapt.NAMES, device="cpu",
                        cache_dir=kit_run.cache_dir, batch_size=16)
    assert states["own"]["norm"] == best["treatments"]["own"]["norm"]  # as training fitted it on the same images
    assert states["source"]["norm"] == source_norm(best) != states["own"]["norm"]
    assert states["own"]["bn"] is None and states["source"]["bn"] is None
    assert states["adabn"]["norm"] == states["own"]["norm"]  # the kit's run normalises its target by its own
    full, early = states["adabn"]["bn"], states["adabn-early"]["bn"]
    assert set(early) < set(full) and all(k.startswith(("backbone.bn1", "backbone.layer1.")) for k in early)
    for k in early:  # the early statistics are the same as full AdaBN's: the layers before them are the same
        assert torch.allclose(early[k].float(), full[k].float(), atol=1e-5), k


def test_early_adabn_stops_each_pass_after_the_first_stage(kit_run):
    from submission.methods.adabn import target_batchnorm
    from submission.methods.adapt.adabn_early import early_batchnorms
    from submission.train.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(kit_run.run_dir / "best.pt")).eval()
    calls = []
    model.backbone.layer2.register_forward_hook(lambda *_: calls.append(1))
    own = batchnorm_state(model)
    stats = target_batchnorm(model, [torch.randn(4, 3, 32, 32) for _ in range(3)], torch.device("cpu"),
                             only=early_batchnorms(model))
    assert not calls and stats and all(torch.equal(v, batchnorm_state(model)[k]) for k, v in own.items())
    target_batchnorm(model, [torch.randn(4, 3, 32, 32)], torch.device("cpu"))
    assert calls  # a full AdaBN pass goes through the whole network


def test_the_loop_evaluation_checkpointing_and_inference_never_name_a_treatment():
    files = ["submission/train/loop.py", "submission/train/evaluate.py", "submission/train/finish.py",
             "submission/train/checkpoint.py", "submission/predict/inference.py"]
    names = [n for n in adapt.NAMES] + ["target_bn", "prior_em", "bn_balance"]
    for f in files:
        text = (ROOT / f).read_text()
        code = "\n".join(line.split("#")[0] for line in text.splitlines())
        code = re.sub(r'"""[\s\S]*?"""', "", code)  # docstrings may explain
        hits = [n for n in names if re.search(rf'["\']{re.escape(n)}["\']', code)]
        if f.endswith("checkpoint.py"):  # reading an earlier version's checkpoint names what it held
            hits = [h for h in hits if h not in ("target_bn", "own", "source", "prior")]
        assert not hits, f"{f} names {hits}"


def test_a_treatment_is_one_file_and_one_registry_line():
    registry = (ROOT / "submission/methods/adapt/__init__.py").read_text()
    for t in adapt.TREATMENTS:
        module = t.fit.__module__ if t.fit else t.combine.__module__
        stem = module.rsplit(".", 1)[1]
        assert (ROOT / "submission/methods/adapt" / f"{stem}.py").is_file()
        assert registry.count(f"    {stem}.TREATMENT,") == 1
    with pytest.raises(Exception, match="unknown test-time treatment 'nope': choose from own, source"):
        adapt.parse("own,nope")
    assert adapt.parse("all", has_batchnorm=False) == ["own", "source", "prior"]
    assert [t.name for t in adapt.order(["mix"])] == ["own", "source", "adabn", "mix"]


def test_an_earlier_checkpoint_reads_in_todays_terms(kit_run, tmp_path):
    from submission.data.files import save_torch
    from submission.train.checkpoint import load_checkpoint

    best = load_checkpoint(kit_run.run_dir / "best.pt")
    old = {k: v for k, v in best.items() if k != "treatments"}
    old["config"] = {k: v for k, v in best["config"].items() if k != "adapt"} | {"adabn": True, "bn_balance": True}
    old["target_bn"] = {"backbone.bn1.running_mean": torch.zeros(64)}
    save_torch(tmp_path / "old.pt", old)
    read = load_checkpoint(tmp_path / "old.pt")
    assert read["config"]["adapt"] == "adabn-balanced" and "target_bn" not in read
    assert read["treatments"]["adabn-balanced"]["bn"]["backbone.bn1.running_mean"].shape == (64,)


def test_adabn_fits_on_an_evenly_spaced_subset_of_a_large_target(kit_run):
    """--bn-fit-images caps the images a fitting pass sees (its cost); the balanced variant's EM reads the
    logits of its first pass, one per fitted image."""
    from types import SimpleNamespace

    from submission.methods.adabn import target_batchnorm
    from submission.methods.adapt.adabn import fit_dataset
    from submission.train.checkpoint import load_checkpoint, model_from_checkpoint

    t = SimpleNamespace(dataset=lambda norm: list(range(100)), run_norm={})
    sub = fit_dataset(t, SimpleNamespace(bn_fit_images=8))
    assert list(sub.indices) == [0, 14, 28, 42, 57, 71, 85, 99]
    assert fit_dataset(t, SimpleNamespace(bn_fit_images=0)) == list(range(100))
    assert fit_dataset(t, SimpleNamespace(bn_fit_images=100)) == list(range(100))
    model = model_from_checkpoint(load_checkpoint(kit_run.run_dir / "best.pt")).eval()
    outputs = []
    target_batchnorm(model, [torch.randn(4, 3, 32, 32) for _ in range(3)], torch.device("cpu"), outputs=outputs)
    assert torch.cat(outputs).shape == (12, 11)
