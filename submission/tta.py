"""Test-time augmentation over the dihedral group: 4 rotations x optional flip, one batch."""

import torch


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
