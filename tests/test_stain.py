"""Stain normalisation (--stain-norm): the formulas against naive references, images it cannot handle, and a run
whose reference travels in its checkpoints to inference."""

import cv2
import numpy as np
import pytest
import torch

from submission.demo.cells import DOMAINS, render_cell
from submission.methods.stain import StainNormed, fit_reference, handles, mosaic


def _cells(domain="WBC", n=6, size=64):
    kinds = ["monocyte", "lymphocyte_typical", "eosinophil", "neutrophil_segmented", "basophil", "myeloblast"]
    return [cv2.resize(render_cell(kinds[i % 6], DOMAINS[domain], np.random.default_rng(i)), (size, size))
            for i in range(n)]


def _lab(img):
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def test_reinhard_moves_each_images_lab_means_and_stds_to_the_reference():
    ref = fit_reference("reinhard", [_cells("Acevedo_20"), _cells("Matek_19")])
    mos = mosaic([_cells("Acevedo_20"), _cells("Matek_19")])
    # the reference is the mosaic's L*a*b* statistics (torchstain's L*a*b*, L in 0..100 as OpenCV's float one)
    assert np.allclose(ref["params"]["means"], _lab(mos).mean(0), atol=0.5)
    assert np.allclose(ref["params"]["stds"], _lab(mos).std(0), atol=0.5)
    means, stds = np.array(ref["params"]["means"]), np.array(ref["params"]["stds"])
    target = _cells("WBC")
    normed = StainNormed(target, ref)
    for i, img in enumerate(target):
        lab = _lab(img)
        moved = (lab - lab.mean(0)) / lab.std(0) * stds + means  # the naive Reinhard transfer, in OpenCV's L*a*b*
        naive = cv2.cvtColor(moved.reshape(img.shape).astype(np.float32), cv2.COLOR_LAB2RGB)
        naive = (np.clip(naive, 0, 1) * 255).astype(np.uint8)
        assert np.abs(normed[i].astype(int) - naive).mean() < 1.5
        assert np.abs(_lab(normed[i]).mean(0) - means).max() < np.abs(lab.mean(0) - means).max()


def test_macenko_keeps_an_image_of_the_reference_stain_and_maps_another_lab_towards_it():
    sources = [_cells("Acevedo_20", 12)]
    ref = fit_reference("macenko", sources)
    assert np.asarray(ref["params"]["stains"]).shape == (3, 2)
    mos = mosaic(sources)  # the image the reference was fitted on comes back nearly as it is
    same = np.abs(StainNormed([mos], ref)[0].astype(int) - mos).mean()
    target = _cells("WBC", 12)
    before = np.abs(np.mean(target, axis=(0, 1, 2)) - np.mean(sources[0], axis=(0, 1, 2))).mean()
    normed_target = StainNormed(target, ref)
    after = np.abs(np.mean([normed_target[i] for i in range(12)], axis=(0, 1, 2)) - np.mean(sources[0], axis=(0, 1, 2))).mean()
    assert same < 6 and after < before


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_an_image_the_method_cannot_handle_is_kept_and_counted(method):
    ref = fit_reference(method, [_cells("Acevedo_20")])
    flat = np.full((32, 32, 3), 236, np.uint8)
    normed = StainNormed([flat, _cells("WBC", 1, 32)[0]], ref)
    assert not handles(method, flat) and np.array_equal(normed[0], flat)
    assert normed.failures([0, 1]) == 1
    with pytest.raises(ValueError, match="no stained pixels|no images"):
        fit_reference(method, [[flat]]) if method == "macenko" else fit_reference(method, [])


def test_a_stain_normalised_run_stores_its_reference_and_inference_uses_it(tiny, tmp_path):
    import dataclasses

    from submission.data.targets import Target
    from submission.predict.inference import predict_run
    from submission.train.checkpoint import load_checkpoint
    from submission.train.loop import fit

    cfg = dataclasses.replace(tiny(tmp_path, recipe="own-norm", stain_norm="reinhard", iters_per_epoch=2), epochs=1)
    fit(cfg)
    best = load_checkpoint(cfg.run_dir / "best.pt")
    assert best["stain"]["method"] == "reinhard" and best["config"]["stain_norm"] == "reinhard"
    target = Target.from_split("WBC1", cfg.data_root)
    logits = predict_run(best, target, tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=16)
    plain = predict_run({**best, "stain": None}, target, tta=False, device="cpu", cache_dir=cfg.cache_dir, batch_size=16)
    assert torch.isfinite(torch.as_tensor(logits)).all() and not np.allclose(logits, plain)
    # its statistics are those of the normalised images, cached apart from the plain images' ones
    other = dataclasses.replace(cfg, stain_norm="none", runs=str(tmp_path / "plain"))
    fit(other)
    assert load_checkpoint(other.run_dir / "best.pt")["normalization"] != best["normalization"]
