"""Training and inference rates per backbone, side by side in one run (python -m studies.bench --backbone all).

Per backbone, with random weights (the rates do not depend on them), at the training size:
  fine-tune    images / s of the kit's training step (source + target batch, SGD, the kit's speed settings)
  extract      images / s of one forward of the backbone alone, as --freeze-backbone caches features
               (bf16 where the feature cache uses it)
  frozen step  images / s of a training step on cached features (bottleneck and heads only)
  predict      images / s of inference, one view and with 8-view TTA (fp32 on the CPU, as infer.py)
A frozen-feature seed costs (source images x (views + 1) + target images) / extract, plus its steps.
"""

import time

import numpy as np
import torch

from submission.config import make_config
from submission.methods.model import MDDNet, to_device
from submission.methods.tta import predict_tta
from submission.train.features import extraction_autocast
from submission.train.step import fast_settings, make_optimizer, train_step

DEFAULT = ("resnet18", "resnet34", "resnet50", "timm:vit_small_patch14_dinov2")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(fn, items: int, repeats: int, device) -> float:
    """items / s of fn's median call, after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return items / float(np.median(times))


def bench_backbone(name: str, device, image_size: int, batch: int, repeats: int) -> dict:
    cfg = make_config("kit", backbone=name, pretrained=False, image_size=image_size)
    amp, channels_last = fast_settings(device, True)
    torch.manual_seed(0)
    model = MDDNet(11, backbone=name, image_size=image_size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = to_device(torch.randn(batch, 3, image_size, image_size), device, channels_last)
    y = torch.randint(0, 11, (batch,), device=device)
    opt = make_optimizer(model, cfg)
    out = {"parameters_m": sum(p.numel() for p in model.backbone.parameters()) / 1e6}
    out["fine_tune"] = _rate(lambda: train_step(model, x, y, x, opt, 0.1, cfg, amp=amp), 2 * batch, repeats, device)
    bf16 = extraction_autocast(device, True)

    @torch.no_grad()
    def extract():
        model.backbone.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model.backbone(x)

    out["extract"] = _rate(extract, batch, repeats, device)
    out["extract_dtype"] = "bf16" if bf16 else "fp32"
    feats = extract().float()
    model.freeze_backbone()
    model.takes_features = True
    opt = make_optimizer(model, cfg)
    out["frozen_step"] = _rate(lambda: train_step(model, feats, y, feats, opt, 0.1, cfg, amp=amp), 2 * batch,
                               max(repeats, 20), device)
    model.takes_features = False
    model.eval()

    def predict(tta):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            return predict_tta(model, x, tta)

    out["predict"] = _rate(lambda: predict(False), batch, repeats, device)
    out["predict_tta"] = _rate(lambda: predict(True), batch, repeats, device)
    return out


def run(names, device, image_size: int, batch: int, repeats: int, log=print) -> dict:
    result = {}
    for name in names:
        log(f"backbone {name} ...")
        result[name] = bench_backbone(name, device, image_size, batch, repeats)
    return result


def table(result: dict, device: str, image_size: int):
    from rich.table import Table

    t = Table(title=f"images / s per backbone at {image_size} px on {device}")
    for c in ("backbone", "M params", "fine-tune", "extract", "frozen step", "predict", "predict TTA x8"):
        t.add_column(c, justify="right")
    for name, r in result.items():
        t.add_row(name, f"{r['parameters_m']:.1f}", f"{r['fine_tune']:.1f}", f"{r['extract']:.1f} ({r['extract_dtype']})",
                  f"{r['frozen_step']:.0f}", f"{r['predict']:.1f}", f"{r['predict_tta']:.1f}")
    return t
