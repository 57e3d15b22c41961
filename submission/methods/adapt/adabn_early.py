"""Early-layer AdaBN: BatchNorm statistics re-estimated on the target only in the backbone's stem and first stage;
the deeper ones keep the training statistics. A style shift (stain, illumination, blur) lives in the early
features, while a label shift (one class dominating the lab) moves the deep statistics, where AdaBN then describes
the dominant class. Each fitting pass stops after the first stage (about a quarter of a resnet18's forward)."""

from submission.errors import KitError
from submission.methods.adapt.adabn import FIT_IMAGES, MIN_IMAGES, fit_dataset, too_few
from submission.methods.adapt.treatment import Treatment

# the stem and first stage of the backbones the kit builds: torchvision and timm resnets (conv1/bn1, layer1),
# timm EfficientNet-like (conv_stem/bn1, blocks.0), ConvNeXt-like and others (stem, stages.0)
EARLY = ("bn1", "layer1.", "stem", "conv_stem", "blocks.0.", "stages.0.")


def early_batchnorms(model) -> list:
    """The backbone's BatchNorm modules in its stem and first stage, in forward order."""
    import torch

    found = [m for name, m in model.backbone.named_modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and name.startswith(EARLY)]
    if not found:
        raise KitError(f"adabn-early: the backbone {getattr(model, 'backbone_name', '')} has no BatchNorm in its stem "
                       "or first stage")
    return found


def fit(t, s) -> dict:
    from submission.methods.adabn import target_batchnorm

    kept = too_few(t, s)
    if kept is not None:
        return kept
    stats = target_batchnorm(t.model, (x for x, _ in t.loader_of(fit_dataset(t, s))), t.device, t.channels_last,
                             only=early_batchnorms(t.model))
    return {"norm": dict(t.run_norm), "bn": stats, "note": None}


TREATMENT = Treatment(
    name="adabn-early", summary="AdaBN in the stem and first stage only (the deeper statistics kept)",
    fits="the BatchNorm statistics of the target in the first layers",
    stores="those BatchNorm buffers and the input normalisation", fit=fit, needs_batchnorm=True,
    settings=(MIN_IMAGES, FIT_IMAGES))
