"""MixVal (Hu et al., "Mixed Samples as Probes for Unsupervised Model Selection in Domain
Adaptation", NeurIPS 2023): the one validator that needs the model, not only its saved outputs."""

import numpy as np
import torch

from submission.methods.model import to_device


@torch.no_grad()
def mixval(model, images: torch.Tensor, pseudo: np.ndarray, device, lam: float = 0.55, seed: int = 0,
           amp=False, channels_last=False, batch_size: int = 128) -> float:
    """MixVal's inter-class probe: pair each target image with a random one of another pseudo-class,
    mix them lam : 1 - lam, and score how often the model predicts the dominant image's pseudo-label.
    `images`: (N, 3, S, S) normalised target images; `pseudo`: the model's labels for them. NaN when
    all pseudo-labels are one class."""
    pseudo = np.asarray(pseudo)
    rng = np.random.default_rng(seed)
    partner = rng.permutation(len(pseudo))
    keep = np.flatnonzero(pseudo != pseudo[partner])
    if len(keep) == 0:
        return float("nan")
    model.eval()
    hits = 0
    for start in range(0, len(keep), batch_size):
        i = keep[start : start + batch_size]
        x = lam * images[i] + (1 - lam) * images[partner[i]]
        x = to_device(x, device, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model.predict(x).argmax(1).cpu().numpy()
        hits += int((pred == pseudo[i]).sum())
    return hits / len(keep)
