"""Train one MDD model (one seed): python train.py --seed 0   (python train.py --help)"""

from pathlib import Path

import typer

from submission.errors import KitError, user_errors
from submission.training import fit, make_config

app = typer.Typer(add_completion=False, rich_markup_mode="rich")


def _crop(text: str | None) -> dict | None:
    """'250,345,288' -> per-dataset 25 um crop sizes (Acevedo_20, Matek_19, WBC)."""
    if text is None:
        return None
    try:
        a, m, w = (int(v) for v in text.split(","))
    except ValueError:
        raise KitError(f"--crop-px takes three integers like 250,345,288, not {text!r}") from None
    return {"Acevedo_20": a, "Matek_19": m, "WBC1": w, "WBC2": w}


@app.command()
@user_errors
def main(
    seed: int = typer.Option(0, help="Seed; names the run folder OUT/seed{N}."),
    demo: bool = typer.Option(False, "--demo", help="Demo defaults for every option not given: data demo/data, 64 px, 10x50 steps, no ImageNet weights."),
    data_root: Path = typer.Option(None, help="Data root in the challenge layout (default: data, demo/data with --demo)."),
    splits: Path = typer.Option(None, help="Split files (default: DATA_ROOT/splits if present, else data_splits/)."),
    out: Path = typer.Option(None, help="Runs folder (default: runs)."),
    epochs: int = typer.Option(None, help="Epochs (default: 50)."),
    iters_per_epoch: int = typer.Option(None, help="Steps per epoch (default: one pass over the source training set)."),
    image_size: int = typer.Option(None, help="Training size in px (default: 224); images are first cropped to 25 um."),
    batch_size: int = typer.Option(None, help="Images per domain per step (default: 32, i.e. 32 source + 32 target)."),
    lr: float = typer.Option(None, help="Learning rate of the new layers (default: 0.004; backbone 0.1x)."),
    trade_off: float = typer.Option(None, help="Weight of the MDD transfer loss (default: 1; 0 = source-only baseline)."),
    margin: float = typer.Option(None, help="MDD margin gamma (default: 4)."),
    grl_hi: float = typer.Option(None, help="Final gradient-reversal coefficient (default: 0.1)."),
    grl_max_iters: int = typer.Option(None, help="Ramp length of the reversal coefficient (default: 1000; 0 = total steps / 20)."),
    snd_temperature: float = typer.Option(None, help="SND temperature (default: 0.005)."),
    min_pred_classes: int = typer.Option(None, help="Collapse guard: an epoch predicting fewer classes on WBC1 never wins (default: 6)."),
    max_entropy_frac: float = typer.Option(None, help="Confidence guard: an epoch whose mean WBC1 entropy exceeds this x ln(11) never wins (default: 0.5)."),
    pretrained: bool = typer.Option(None, "--pretrained/--no-pretrained", help="ImageNet weights for resnet18 (default: on; off with --demo)."),
    balanced: bool = typer.Option(None, "--balanced/--no-balanced", help="Class-balanced sampling of the sources (default: on)."),
    class_weighted_loss: bool = typer.Option(None, "--class-weighted-loss/--no-class-weighted-loss", help="Inverse-frequency class weights in the loss (default: off)."),
    val_fold: int = typer.Option(None, help="Source fold held out for validation (default: 0; -1 = none)."),
    crop_px: str = typer.Option(None, help="25 um crop in px for Acevedo_20,Matek_19,WBC (default: 250,345,288)."),
    device: str = typer.Option(None, help="auto, cpu or cuda (default: auto)."),
    workers: int = typer.Option(None, help="Data loader worker processes (default: 4; 0 with --demo)."),
    cache: bool = typer.Option(None, "--cache/--no-cache", help="Read prepared images from a uint8 cache on disk (default: on)."),
    cache_dir: Path = typer.Option(None, help="Cache folder (default: cache)."),
    average_last: int = typer.Option(None, help="Also write avg.pt, the mean weights of the last N epochs (default: 3; 0 = off)."),
    fast: bool = typer.Option(None, "--fast/--no-fast", help="channels_last, plus bf16 autocast on CUDA (CPU stays fp32) (default: on)."),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model for training (CUDA) (default: off)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in OUT/seed{N} from its last.pt."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a run already in OUT/seed{N}."),
):
    """Train resnet18 + MDD on Acevedo_20 + Matek_19, adapting to the unlabelled WBC1 images.

    Writes OUT/seed{N}/: config.json, metrics.csv (one row per epoch), last.pt, and best.pt,
    the epoch with the best SND on WBC1 among those that pass the collapse guard.
    """
    cfg = make_config(
        demo, seed=seed, data_root=_str(data_root), splits_dir=_str(splits), out=_str(out), epochs=epochs,
        iters_per_epoch=iters_per_epoch, image_size=image_size, batch_size=batch_size, lr=lr, trade_off=trade_off,
        margin=margin, grl_hi=grl_hi, grl_max_iters=grl_max_iters, snd_temperature=snd_temperature,
        min_pred_classes=min_pred_classes, max_entropy_frac=max_entropy_frac, pretrained=pretrained, balanced=balanced,
        class_weighted_loss=class_weighted_loss, val_fold=val_fold, crop_px=_crop(crop_px), device=device,
        workers=workers, cache=cache, cache_dir=_str(cache_dir), average_last=average_last, fast=fast, compile=compile,
    )
    try:
        best = fit(cfg, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    print(f"best epoch {best['epoch']}: target SND {best['target_snd']:.4f}, source-val F1 {best['source_val_f1']:.3f}"
          f" -> {cfg.run_dir / 'best.pt'}")


def _str(p):
    return None if p is None else str(p)


if __name__ == "__main__":
    app()
