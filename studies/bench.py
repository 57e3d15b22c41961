"""Where the time goes: data pipeline, training step, TTA inference, peak memory. One run, side by side.

    python -m studies.bench --json bench.json           # CPU: a few minutes with the defaults
    python -m studies.bench --device cuda --steps 30    # on a GPU
    python -m studies.bench --backbone all --batch 8    # rates per backbone (studies/bench_backbones.py)

Data, in augmented training samples per second on one worker (this process, one thread),
on real-sized synthetic images (360x363 jpg, 400x400 RGBA tiff, 288x288 TIF):
  reference   decode + 25 um crop + resize + the augmentation chain with albumentations' RandomFog,
              per sample, as the reference MDD code does it
  direct      the kit without its cache: decode + crop + resize + the chain with FastFog
  cached      the kit: the prepared image from the uint8 cache + the chain with FastFog
Training steps per second at batch B+B: plain fp32 eager vs the kit's settings (channels_last, plus
bf16 autocast on CUDA, optionally torch.compile; the CPU stays fp32).
"""

import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
import typer
from rich.console import Console

from submission.config import make_config
from submission.data.datasets import cached_images
from submission.data.files import write_json
from submission.data.images import read_rgb
from submission.data.transforms import FastFog, _compose, prepare, train_transform, work_size_for, zoom_transform
from submission.demo.cells import DOMAINS, render_cell
from submission.errors import user_errors
from submission.methods.model import MDDNet, to_device
from submission.methods.tta import predict_tta
from submission.train.step import fast_settings, train_step

KINDS = {  # file kind -> (domain, suffix, crop px)
    "jpg 360x363": ("Acevedo_20", ".jpg", 250),
    "tiff 400x400 RGBA": ("Matek_19", ".tiff", 345),
    "TIF 288x288": ("WBC", ".TIF", 288),
}
MEAN, STD = [0.8, 0.7, 0.75], [0.17, 0.22, 0.12]


def write_images(folder: Path, n: int) -> dict[str, list[Path]]:
    """n synthetic cells of each file kind, as the challenge stores them."""
    files = {}
    classes = ["neutrophil_segmented", "lymphocyte_typical", "monocyte", "eosinophil"]
    for kind, (domain, suffix, _) in KINDS.items():
        files[kind] = []
        for i in range(n):
            img = render_cell(classes[i % 4], DOMAINS[domain], np.random.default_rng(i))[..., ::-1]
            if domain == "Matek_19":
                img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
            path = folder / f"{domain}_{i}{suffix}"
            cv2.imencode(suffix, img)[1].tofile(path)
            files[kind].append(path)
    return files


def rate(fn, items, min_seconds: float) -> float:
    """Calls per second of fn over items (cycled), for at least min_seconds and one full pass."""
    fn(items[0])  # warm up
    n, t0 = 0, time.perf_counter()
    while n < len(items) or time.perf_counter() - t0 < min_seconds:
        fn(items[n % len(items)])
        n += 1
    return n / (time.perf_counter() - t0)


def bench_data(folder: Path, n: int, image_size: int, min_seconds: float) -> dict:
    work = work_size_for(image_size)
    files = write_images(folder, n)
    reference = train_transform(image_size, MEAN, STD, fog="albumentations")
    kit = train_transform(image_size, MEAN, STD, fog="fast")
    reference.set_random_seed(0)
    kit.set_random_seed(0)

    def ref_sample(args):
        path, crop = args
        img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return reference(image=prepare(img, crop, work))["image"]

    def direct_sample(args):
        path, crop = args
        return kit(image=prepare(read_rgb(path), crop, work))["image"]

    rows = {}
    for kind, paths in files.items():
        crop = KINDS[kind][2]
        items = [(p, crop) for p in paths]
        images, _ = cached_images([p.name for p in paths], folder, crop, work, folder / "cache", kind.split()[0])
        ref = rate(ref_sample, items, min_seconds)
        direct = rate(direct_sample, items, min_seconds)
        cached = rate(lambda i: kit(image=np.asarray(images[i]))["image"], list(range(len(paths))), min_seconds)
        rows[kind] = {"reference": ref, "direct": direct, "cached": cached,
                      "direct_vs_reference": direct / ref, "cached_vs_reference": cached / ref,
                      "cached_vs_direct": cached / direct}
    return rows


def bench_transforms(image_size: int, min_seconds: float) -> dict:
    """Milliseconds per call of each transform of the chain, applied always (p=1), on a working-size image."""
    work = work_size_for(image_size)
    img = prepare(render_cell("eosinophil", DOMAINS["Acevedo_20"], np.random.default_rng(0)), 250, work)
    crop = A.RandomCrop(height=image_size, width=image_size)
    small = _compose([crop])(image=img)["image"]
    chain = {
        "decode jpg 360x363": None,
        "RandomCrop": (crop, img),
        "Blur": (A.Blur(blur_limit=(3, 7), p=1.0), small),
        "RandomFog (albumentations)": (A.RandomFog(fog_coef_range=(0.3, 1.0), alpha_coef=0.08, p=1.0), small),
        "FastFog (kit)": (FastFog(p=1.0), small),
        "ColorJitter": (A.ColorJitter(brightness=(0.7, 1.3), contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue=0.0, p=1.0), small),
        "HorizontalFlip + VerticalFlip": (_compose([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)]), small),
        "Rotate": (A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0), small),
        "zoom (Affine scale 0.8..1.2)": (zoom_transform(0.2, p=1.0), img),
        "Normalize": (A.Normalize(mean=MEAN, std=STD), small),
    }
    out = {}
    with tempfile.TemporaryDirectory() as d:
        path = write_images(Path(d), 1)["jpg 360x363"][0]
        out["decode jpg 360x363"] = 1000 / rate(lambda p: read_rgb(p), [path], min_seconds)
    for name, entry in chain.items():
        if entry is None:
            continue
        t, x = entry
        t = _compose([t]) if not isinstance(t, A.Compose) else t
        t.set_random_seed(0)
        out[name] = 1000 / rate(lambda im: t(image=im)["image"], [x], min_seconds)
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_train(device, image_size: int, batch: int, steps: int, compile_model: bool = False) -> dict:
    """Training steps per second of the `kit` recipe's step (its losses and weights) at batch `batch`
    source + `batch` target: plain fp32 eager against the kit's speed settings, timed step by step in
    alternation (so drift hits both alike); each side's rate is its median step."""
    recipe = make_config("kit")
    sides = {}
    for name, fast in (("plain", False), ("kit", True)):
        torch.manual_seed(0)
        amp, channels_last = fast_settings(device, fast)
        model = MDDNet(11).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        step_model = torch.compile(model) if (fast and compile_model) else model
        opt = torch.optim.SGD(model.param_groups(0.004), lr=0.004, momentum=0.9, nesterov=True, weight_decay=5e-4)
        x_s = to_device(torch.randn(batch, 3, image_size, image_size), device, channels_last)
        x_t = to_device(torch.randn(batch, 3, image_size, image_size), device, channels_last)
        y = torch.randint(0, 11, (batch,)).to(device)
        sides[name] = (lambda m=step_model, o=opt, a=x_s, b=x_t, y=y, amp=amp: train_step(
            m, a, y, b, o, 0.1, recipe, amp=amp))
    for fn in sides.values():  # warm up (compilation, allocator, oneDNN primitives)
        for _ in range(3 if compile_model else 1):
            fn()
    _sync(device)
    times = {name: [] for name in sides}
    for _ in range(steps):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: 1.0 / float(np.median(t)) for name, t in times.items()}


def bench_tta(device, image_size: int, batch: int, batches: int) -> float:
    """Test-time-augmented (8 views) images per second, with the kit's settings."""
    amp, channels_last = fast_settings(device, True)
    model = MDDNet(11).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = to_device(torch.randn(batch, 3, image_size, image_size), device, channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        predict_tta(model, x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            predict_tta(model, x)
        _sync(device)
    return batches * batch / (time.perf_counter() - t0)


def fog_picture(path: Path, size: int = 224) -> None:
    """Side by side on four cells: albumentations' RandomFog (left) and the kit's FastFog (right),
    same particle layout (same seed), at fog intensity 0 (top row), 0.3, 0.65 and 1.0."""
    work = work_size_for(size)
    cells = ["neutrophil_segmented", "eosinophil", "monocyte", "lymphocyte_typical"]
    imgs = [prepare(render_cell(c, DOMAINS["Acevedo_20"], np.random.default_rng(i)), 250, work)[:size, :size]
            for i, c in enumerate(cells)]
    rows = [np.hstack([np.hstack([im, im]) for im in imgs])]
    for intensity in (0.3, 0.65, 1.0):
        row = []
        for im in imgs:
            ref = _compose([A.RandomFog(fog_coef_range=(intensity, intensity), alpha_coef=0.08, p=1.0)])
            fast = _compose([FastFog(fog_coef_range=(intensity, intensity), alpha_coef=0.08, p=1.0)])
            ref.set_random_seed(1)
            fast.set_random_seed(1)
            row.append(np.hstack([ref(image=im)["image"], fast(image=im)["image"]]))
        rows.append(np.hstack(row))
    grid = np.vstack(rows)
    from submission.data.files import atomic_path

    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", grid[..., ::-1])
        buf.tofile(tmp)


def run(device="auto", image_size=224, batch=32, steps=5, images=24, min_seconds=2.0, compile_model=False,
        epochs=50, source_images=32612, console=None) -> dict:
    from submission.train.step import resolve_device

    dev = resolve_device(device)
    log = console.print if console else print
    result = {"machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": str(dev),
                          "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                          "torch": torch.__version__, "albumentations": A.__version__},
              "settings": {"image_size": image_size, "batch": batch, "steps": steps, "images_per_kind": images}}
    with tempfile.TemporaryDirectory() as d:
        log("data pipeline ...")
        result["data_samples_per_s_per_worker"] = bench_data(Path(d), images, image_size, min_seconds)
    log("transforms ...")
    result["transform_ms"] = bench_transforms(image_size, min_seconds / 4)
    log("training steps ...")
    rates = bench_train(dev, image_size, batch, steps, compile_model)
    plain, kit = rates["plain"], rates["kit"]
    steps_per_epoch = source_images // batch
    result["train_steps_per_s"] = {"plain_fp32_eager": plain, "kit": kit, "ratio": kit / plain,
                                   "kit_settings": ("bf16 autocast + channels_last" if dev.type == "cuda" else "fp32 channels_last")
                                   + (" + torch.compile" if compile_model else ""),
                                   "projected_minutes_per_seed": epochs * steps_per_epoch / kit / 60}
    log("TTA inference ...")
    result["tta_images_per_s"] = bench_tta(dev, image_size, batch, max(2, steps))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


def table(result: dict):
    from rich.table import Table

    t = Table(title="data: augmented samples / s / worker")
    for c in ("images", "reference", "kit direct", "kit cached", "direct/ref", "cached/ref", "cache's share"):
        t.add_column(c, justify="right")
    for kind, r in result["data_samples_per_s_per_worker"].items():
        t.add_row(kind, f"{r['reference']:.0f}", f"{r['direct']:.0f}", f"{r['cached']:.0f}",
                  f"{r['direct_vs_reference']:.1f}x", f"{r['cached_vs_reference']:.1f}x", f"{r['cached_vs_direct']:.2f}x")
    tt = Table(title="cost per transform (ms, p=1)")
    tt.add_column("transform")
    tt.add_column("ms", justify="right")
    for k, v in result["transform_ms"].items():
        tt.add_row(k, f"{v:.2f}")
    tr = result["train_steps_per_s"]
    ts = Table(title=f"training and inference on {result['machine']['device']}")
    ts.add_column("measure")
    ts.add_column("value", justify="right")
    ts.add_row("train steps/s, plain fp32 eager", f"{tr['plain_fp32_eager']:.3f}")
    ts.add_row(f"train steps/s, kit ({tr['kit_settings']})", f"{tr['kit']:.3f}")
    ts.add_row("ratio kit / plain", f"{tr['ratio']:.2f}")
    ts.add_row("projected minutes per 50-epoch seed", f"{tr['projected_minutes_per_seed']:.0f}")
    ts.add_row("TTA inference images/s (8 views)", f"{result['tta_images_per_s']:.1f}")
    ts.add_row("peak RSS MB", f"{result['peak_rss_mb']:.0f}")
    if "peak_gpu_mb" in result:
        ts.add_row("peak GPU MB", f"{result['peak_gpu_mb']:.0f}")
    return t, tt, ts


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    json_file: Path = typer.Option(Path("bench.json"), "--json", help="JSON file to write."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    image_size: int = typer.Option(224, help="Training size."),
    batch: int = typer.Option(32, help="Per-domain batch (32 means 32 source + 32 target)."),
    steps: int = typer.Option(5, help="Timed training steps per variant (alternating)."),
    images: int = typer.Option(24, help="Synthetic images per file kind."),
    min_seconds: float = typer.Option(2.0, help="Least time per data measurement."),
    compile_model: bool = typer.Option(False, "--compile", help="Also torch.compile the kit's training step."),
    fog_png: Path = typer.Option(None, help="Also save RandomFog and FastFog side by side on a few cells to this PNG."),
    backbone: list[str] = typer.Option(None, help="Instead: fine-tune, feature-extraction, frozen-step and inference "
                                                  "rates of these backbones (repeat the option; 'all': resnet18, "
                                                  "resnet34, resnet50, timm:vit_small_patch14_dinov2)."),
):
    """Measure the data pipeline, training steps, TTA inference and peak memory; print tables, write JSON."""
    console = Console()
    if backbone:
        from studies import bench_backbones as bb
        from submission.train.step import resolve_device

        names = [n for b in backbone for n in (bb.DEFAULT if b == "all" else (b,))]
        t0 = time.time()
        dev = resolve_device(device)
        result = {"machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": str(dev),
                              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
                  "settings": {"image_size": image_size, "batch": batch, "repeats": steps},
                  "backbones": bb.run(names, dev, image_size, batch, steps, console.print)}
        result["seconds"] = time.time() - t0
        console.print(bb.table(result["backbones"], str(dev), image_size))
        write_json(json_file, result)
        console.print(f"wrote {json_file} ({result['seconds']:.0f}s)")
        return
    if fog_png is not None:
        fog_picture(fog_png)
        console.print(f"wrote {fog_png}")
    t0 = time.time()
    result = run(device, image_size, batch, steps, images, min_seconds, compile_model, console=console)
    result["seconds"] = time.time() - t0
    for t in table(result):
        console.print(t)
    write_json(json_file, json.loads(json.dumps(result)))
    console.print(f"wrote {json_file} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    app()
