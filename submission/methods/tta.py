"""Test-time augmentation over the dihedral group (4 rotations x optional flip, one batch) and the
prediction loop that training, inference and the studies share. A blood cell has no up or down:
the mean logits over its 8 views are a label-free ensemble."""

import numpy as np
import torch

from submission.methods.model import to_device


def dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (8, B, C, H, W): the rotations by 0, 90, 180, 270 degrees of x and of x mirrored."""
    mirrored = x.flip(-1)
    return torch.stack([torch.rot90(v, k, dims=(-2, -1)) for v in (x, mirrored) for k in range(4)])


@torch.no_grad()
def predict_tta(model, x: torch.Tensor, tta: bool = True) -> torch.Tensor:
    """Main-head logits (B, K), averaged over the 8 dihedral views (one forward of 8B images)."""
    views = dihedral_views(x) if tta else x[None]  # (V, B, C, H, W)
    v, b = views.shape[:2]
    logits = model.predict(views.flatten(0, 1))  # (V*B, K)
    return logits.view(v, b, -1).float().mean(0)


@torch.no_grad()
def predict_logits(model, loader, device, amp=False, channels_last=False, tta=False, on_batch=None) -> np.ndarray:
    """Main-head logits (N, K) over a loader, in loader order; with `tta`, averaged over the
    8 dihedral views. `on_batch(n)` is called after each batch (progress)."""
    model.eval()
    out = []
    for x, _ in loader:
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(predict_tta(model, x, tta).cpu())
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(out).numpy()
