"""A synthetic demo data set in exactly the challenge layout (no downloads).

    python -m submission.demo --dest demo       # demo/data (the data root), demo/labels/
    python -m submission.demo --dest demo --study   # also demo/lab_b and demo/oracle (for studies)

Cells are drawn from their morphology: size, nucleus shape and lobes, chromatin,
granules and cytoplasm tint, so each class is recognisable by shape, not by
colour alone. Each dataset has its own stain colours, pixel scale, blur, noise,
image size and file type (Acevedo_20 360x363 jpg, Matek_19 400x400 RGBA tiff,
WBC 288x288 TIF), the sources keep the real class imbalance (no myeloblast in
Acevedo_20), and WBC1/WBC2 have a class prior of their own. The target labels
go to `<out>/labels/WBC1.csv` and `WBC2.csv`, outside the data root: they are
read only to report scores.

The target lab differs from both sources the way real labs differ, in ways that the
25 um crop and per-dataset mean/std do not undo (demo version 2):
- its stain moves the nucleus and the cytoplasm to different hues (nucleus towards
  magenta, cytoplasm and eosinophilic granules towards blue-grey), not a global offset;
- its true pixel scale is 10% above the nominal 11.52 px/um the kit crops with;
- softer focus, uneven illumination (a smooth gradient), more sensor noise, and JPEG
  compression before the files were saved as TIF;
- a class prior of its own.
`--study` also writes a second target lab, `lab_b` (other settings of the same kinds:
nucleus towards blue, cytoplasm towards orange, scale 8% below nominal), as its own data
root with the same sources, and `oracle`: the demo lab's own labelled images in the
sources' layout, for a not-label-free reference run that shows the classes stay learnable.
"""

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .classes import CLASSES, CLASS_TO_ID
from .files import write_csv, write_json
from .splits import build_from_disk

# Real counts per class (challenge README), scaled down by `scale` for the demo.
REAL_COUNTS = {
    "Acevedo_20": [1168, 3067, 1499, 0, 592, 1137, 1015, 1633, 1646, 1370, 1164],
    "Matek_19": [79, 424, 78, 3268, 70, 42, 15, 109, 8484, 1815, 3937],
}
# The target lab's class prior differs from both sources.
TARGET_PRIOR = [0.03, 0.07, 0.05, 0.08, 0.04, 0.04, 0.04, 0.08, 0.27, 0.12, 0.18]
ACEVEDO_PREFIX = ["BA", "EO", "ERB", None, "PMY", "MY", "MMY", "BNE", "SNE", "MO", "LY"]
MATEK_CODE = ["BAS", "EOS", "EBO", "MYO", "PMO", "MYB", "MMZ", "NGB", "NGS", "MON", "LYT"]


VERSION = 2  # written to DATA_ROOT/demo.json; bump when the generator's output changes


@dataclass(frozen=True)
class Domain:
    """How one lab's images look: scale, size, stain, optics, sensor."""

    px_per_um: float  # nominal: what the lab states, and what the kit crops with
    size_hw: tuple[int, int]
    stain: tuple  # 3x3 colour mixing matrix applied to the canonical stain colours
    offset: tuple  # added after mixing
    blur_sigma: float
    noise: float  # std of pixel noise, 0..255 scale
    scale_error: float = 1.0  # true px/um = nominal x this
    nucleus_shift: tuple = (0.0, 0.0, 0.0)  # RGB added to the nucleus (and basophilic granule) colours
    cyto_shift: tuple = (0.0, 0.0, 0.0)  # RGB added to the cytoplasm, red cell and eosinophilic granule colours
    illumination: float = 0.0  # amplitude of a smooth multiplicative brightness gradient
    jpeg_quality: int = 0  # JPEG round trip before saving (0: none)


DOMAINS = {
    "Acevedo_20": Domain(10.0, (363, 360), ((1.0, 0.02, 0.0), (0.0, 0.92, 0.05), (0.0, 0.05, 0.80)), (0.02, 0.0, 0.05), 0.6, 2.0),
    "Matek_19": Domain(13.8, (400, 400), ((0.92, 0.0, 0.05), (0.05, 0.85, 0.0), (0.0, 0.1, 1.0)), (0.0, 0.0, 0.06), 1.2, 3.5),
    "WBC": Domain(11.52, (288, 288), ((0.82, 0.05, 0.05), (0.02, 0.80, 0.05), (0.05, 0.05, 0.92)), (-0.02, -0.03, 0.02),
                  3.0, 6.0, scale_error=1.10, nucleus_shift=(0.12, -0.02, -0.04), cyto_shift=(-0.10, 0.0, 0.05),
                  illumination=0.15, jpeg_quality=50),
    # lab B: used only by studies, for the final report
    "lab_b": Domain(11.52, (288, 288), ((0.95, 0.03, 0.0), (0.0, 0.88, 0.06), (0.04, 0.0, 0.85)), (0.03, 0.0, -0.02),
                    2.4, 7.0, scale_error=0.92, nucleus_shift=(-0.10, -0.04, 0.04), cyto_shift=(0.06, -0.03, -0.08),
                    illumination=0.2, jpeg_quality=60),
}
LAB_B_PRIOR = [0.02, 0.05, 0.06, 0.10, 0.05, 0.05, 0.05, 0.10, 0.22, 0.10, 0.20]

# Canonical stain colours (RGB 0..1) before a domain's mixing.
BACKGROUND = (0.95, 0.90, 0.92)
RBC = (0.88, 0.64, 0.66)
NUCLEUS_DARK = (0.36, 0.20, 0.52)
NUCLEUS_LIGHT = (0.52, 0.38, 0.66)
CYTO = {
    "pink": (0.88, 0.78, 0.84),
    "blue": (0.62, 0.70, 0.88),
    "grey": (0.74, 0.73, 0.84),
    "rose": (0.80, 0.66, 0.74),
}
GRANULE = {
    "orange": (0.96, 0.55, 0.32),
    "black": (0.22, 0.10, 0.32),
    "purple": (0.58, 0.26, 0.48),
    "fine": (0.76, 0.58, 0.70),
}

# (cell diameter um, cytoplasm tint, nucleus kind, granules or None, granule density)
MORPHOLOGY = {
    "basophil": (11.0, "rose", "bilobed", "black", 0.9),
    "eosinophil": (13.0, "pink", "bilobed", "orange", 1.0),
    "erythroblast": (8.5, "rose", "round_small", None, 0.0),
    "myeloblast": (16.0, "blue", "round_blast", None, 0.0),
    "promyelocyte": (18.0, "blue", "round_eccentric", "purple", 0.7),
    "myelocyte": (14.5, "pink", "oval_eccentric", "fine", 0.5),
    "metamyelocyte": (13.0, "pink", "kidney", "fine", 0.3),
    "neutrophil_banded": (12.0, "pink", "band", None, 0.0),
    "neutrophil_segmented": (12.0, "pink", "segmented", None, 0.0),
    "monocyte": (17.0, "grey", "folded", None, 0.0),
    "lymphocyte_typical": (9.0, "blue", "round_large", None, 0.0),
}


def _pt(x, y):
    # cv2 drawing with 4 bits of sub-pixel precision
    return int(round(x * 16)), int(round(y * 16))


def _circle(mask, c, r, value=255):
    cv2.circle(mask, _pt(*c), max(1, int(round(r * 16))), value, -1, cv2.LINE_AA, 4)


def _ellipse(mask, c, axes, angle, value=255, start=0, end=360, thickness=-1):
    cv2.ellipse(mask, _pt(*c), _pt(*axes), angle, start, end, value, thickness, cv2.LINE_AA, 4)


def _nucleus(mask, kind, c, r, rng):
    """Draw a nucleus of the given kind into `mask` for a cell of radius r (px) at c."""
    angle = rng.uniform(0, 360)
    rot = np.deg2rad(angle)
    u = np.array([np.cos(rot), np.sin(rot)])
    v = np.array([-u[1], u[0]])
    c = np.asarray(c, dtype=float)
    if kind == "round_large":  # lymphocyte: nucleus fills the cell
        _circle(mask, c + u * 0.05 * r, 0.84 * r)
    elif kind == "round_small":  # erythroblast: small, very round, dense
        _circle(mask, c + u * 0.1 * r, 0.56 * r)
    elif kind == "round_blast":  # myeloblast: large round nucleus, thin rim
        _ellipse(mask, c, (0.80 * r, 0.74 * r), angle)
    elif kind == "round_eccentric":  # promyelocyte
        _ellipse(mask, c + u * 0.22 * r, (0.60 * r, 0.52 * r), angle)
    elif kind == "oval_eccentric":  # myelocyte
        _ellipse(mask, c + u * 0.28 * r, (0.52 * r, 0.38 * r), angle + 90)
    elif kind == "kidney":  # metamyelocyte: bean with a notch
        _ellipse(mask, c, (0.58 * r, 0.36 * r), angle)
        _circle(mask, c + v * 0.42 * r, 0.28 * r, 0)
    elif kind == "folded":  # monocyte: large irregular, folded
        _ellipse(mask, c + u * 0.1 * r, (0.62 * r, 0.46 * r), angle)
        _circle(mask, c + v * 0.48 * r + u * 0.15 * r, 0.26 * r, 0)
        _circle(mask, c - u * 0.45 * r, 0.22 * r, 0)
    elif kind == "band":  # banded neutrophil: a thick C
        span = rng.uniform(200, 260)
        _ellipse(mask, c, (0.55 * r, 0.48 * r), angle, 255, 0, span, max(1, int(0.22 * r)))
    elif kind == "segmented":  # 3-5 lobes joined by thin strands
        k = rng.integers(3, 6)
        thetas = np.linspace(0, rng.uniform(200, 300), k) + angle
        pts = [c + 0.5 * r * np.array([np.cos(np.deg2rad(t)), np.sin(np.deg2rad(t))]) for t in thetas]
        for a, b in zip(pts[:-1], pts[1:]):
            cv2.line(mask, _pt(*a), _pt(*b), 255, max(1, int(0.07 * r)), cv2.LINE_AA, 4)
        for p in pts:
            _circle(mask, p, rng.uniform(0.20, 0.25) * r)
    elif kind == "bilobed":  # eosinophil, basophil: two lobes
        for s in (-1, 1):
            _circle(mask, c + s * u * 0.3 * r, 0.3 * r)
        cv2.line(mask, _pt(*(c - u * 0.3 * r)), _pt(*(c + u * 0.3 * r)), 255, max(1, int(0.1 * r)), cv2.LINE_AA, 4)
    else:
        raise ValueError(kind)


def _smooth_noise(rng, hw, scale_px):
    """Low-frequency noise in [-1, 1] for chromatin texture."""
    h, w = hw
    small = rng.standard_normal((max(2, int(h / scale_px)), max(2, int(w / scale_px)))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big / 2.0, -1, 1)


def render_cell(cls: str, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """One image (H, W, 3) uint8 RGB of a cell of class `cls` as the domain's lab would see it."""
    h, w = domain.size_hw
    k = domain.px_per_um * domain.scale_error
    nuc_shift, cyto_shift = np.asarray(domain.nucleus_shift), np.asarray(domain.cyto_shift)
    diam, tint, nuc_kind, gran_kind, gran_density = MORPHOLOGY[cls]
    r = 0.5 * diam * k * rng.uniform(0.9, 1.1)
    c = np.array([w / 2, h / 2]) + rng.normal(0, 0.6 * k, 2)

    img = np.empty((h, w, 3), np.float32)
    img[:] = BACKGROUND
    # red blood cells around the white cell: pale-centred discs of about 7.5 um
    rbc = np.zeros((h, w), np.uint8)
    pale = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(3, 8)):
        p = rng.uniform(0, 1, 2) * [w, h]
        rr = 3.75 * k * rng.uniform(0.9, 1.1)
        _circle(rbc, p, rr)
        _circle(pale, p, 0.45 * rr)
    _paint(img, rbc, np.clip(np.array(RBC) + cyto_shift, 0, 1))
    _paint(img, pale, BACKGROUND, 0.5)

    cyto = np.zeros((h, w), np.uint8)
    _ellipse(cyto, c, (r, r * rng.uniform(0.88, 1.0)), rng.uniform(0, 360))
    _paint(img, cyto, tuple(np.clip(np.array(CYTO[tint]) + cyto_shift + rng.normal(0, 0.015, 3), 0, 1)))
    if cls == "monocyte":  # vacuoles
        vac = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(3, 7)):
            _circle(vac, c + rng.uniform(-0.7, 0.7, 2) * r, rng.uniform(0.04, 0.08) * r)
        _paint(img, cv2.bitwise_and(vac, cyto), BACKGROUND, 0.7)
    if gran_kind is not None:
        gran = np.zeros((h, w), np.uint8)
        n = int(gran_density * (r / k) ** 2 * 2.2)
        rad = np.sqrt(rng.uniform(0, 1, n)) * 0.92 * r
        th = rng.uniform(0, 2 * np.pi, n)
        for ri, ti in zip(rad, th):
            _circle(gran, c + ri * np.array([np.cos(ti), np.sin(ti)]), rng.uniform(0.25, 0.45) * k)
        basic = gran_kind in ("black", "purple")  # basophilic granules take the nucleus's dye
        gran_colour = np.clip(np.array(GRANULE[gran_kind]) + (nuc_shift if basic else cyto_shift), 0, 1)
        _paint(img, cv2.bitwise_and(gran, cyto), gran_colour, 0.85)

    nuc = np.zeros((h, w), np.uint8)
    _nucleus(nuc, nuc_kind, c, r, rng)
    light = nuc_kind in ("round_blast", "folded")
    colour = np.clip(np.array(NUCLEUS_LIGHT if light else NUCLEUS_DARK) + nuc_shift, 0, 1)
    texture = _smooth_noise(rng, (h, w), (0.6 if light else 1.2) * k)[..., None]
    a = (nuc.astype(np.float32) / 255.0)[..., None]
    img = img * (1 - a) + a * np.clip(colour * (1 + 0.12 * texture), 0, 1)
    if nuc_kind == "round_blast":  # nucleoli
        nl = np.zeros((h, w), np.uint8)
        for _ in range(rng.integers(1, 3)):
            _circle(nl, c + rng.uniform(-0.35, 0.35, 2) * r, 0.1 * r)
        _paint(img, cv2.bitwise_and(nl, nuc), np.clip(NUCLEUS_LIGHT + np.array([0.12, 0.12, 0.08]) + nuc_shift, 0, 1), 0.8)
    if gran_kind == "black":  # basophil granules also lie over the nucleus
        _paint(img, cv2.bitwise_and(gran, nuc), gran_colour, 0.7)

    # the lab's stain, optics and sensor
    img = img @ np.asarray(domain.stain, np.float32).T + np.asarray(domain.offset, np.float32)
    img *= rng.uniform(0.96, 1.04, 3).astype(np.float32)  # slide-to-slide stain variation
    if domain.illumination:  # uneven illumination: a brightness ramp in a random direction
        t = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = ((xx - w / 2) * np.cos(t) + (yy - h / 2) * np.sin(t)) / (0.5 * max(h, w))
        img *= (1.0 + domain.illumination * rng.uniform(0.5, 1.0) * ramp)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), domain.blur_sigma)
    img = img * 255.0 + rng.normal(0, domain.noise, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if domain.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, domain.jpeg_quality])
        img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return img


def _paint(img, mask, colour, strength=1.0):
    a = (mask.astype(np.float32) / 255.0 * strength)[..., None]
    img *= 1 - a
    img += a * np.asarray(colour, np.float32)


def demo_counts(scale: float, min_count: int = 4) -> dict[str, list[int]]:
    return {d: [max(min_count, round(n * scale)) if n else 0 for n in counts] for d, counts in REAL_COUNTS.items()}


def _target_labels(n: int, rng, prior=TARGET_PRIOR) -> list[int]:
    # every class at least twice, the rest drawn from the target prior
    base = [c for c in range(len(CLASSES)) for _ in range(2)]
    rest = rng.choice(len(CLASSES), size=n - len(base), p=prior).tolist()
    labels = base + rest
    rng.shuffle(labels)
    return labels


def _write_source_image(job) -> None:
    """Worker: render one source-layout image (dataset layout, domain name, class, rng key, file path)."""
    layout, domain, c, key, path = job
    img = render_cell(CLASSES[c], DOMAINS[domain], np.random.default_rng(key))
    if layout == "Acevedo_20":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    else:  # Matek_19 ships RGBA tiffs
        ok, buf = cv2.imencode(".tiff", np.dstack([img[..., ::-1], np.full(img.shape[:2], 255, np.uint8)]))
    buf.tofile(path)


def _write_target_image(job) -> None:
    domain, c, key, path = job
    img = render_cell(CLASSES[c], DOMAINS[domain], np.random.default_rng(key))
    cv2.imencode(".tiff", img[..., ::-1])[1].tofile(path)


def _source_jobs(root: Path, seed: int, counts: dict, domain_of=lambda dataset: dataset, stream: int = 0) -> list:
    jobs = []
    for d_i, dataset in enumerate(("Acevedo_20", "Matek_19")):
        for c, n in enumerate(counts[dataset]):
            folder = root / dataset / CLASSES[c]
            folder.mkdir(parents=True, exist_ok=True)
            numbers = np.random.default_rng([seed, d_i, c]).choice(900_000, size=n, replace=False) + 100_000
            for i in range(n):
                name = f"{ACEVEDO_PREFIX[c]}_{numbers[i]}.jpg" if dataset == "Acevedo_20" else f"{MATEK_CODE[c]}_{i + 1:04d}.tiff"
                key = [seed, d_i, c, i] if stream == 0 else [seed, stream, d_i, c, i]
                jobs.append((dataset, domain_of(dataset), c, key, folder / name))
    return jobs


def _target_jobs(root: Path, labels_dir: Path, seed: int, n_target: int, domain: str, stream: int, prior) -> list:
    """Jobs for WBC1/WBC2 of one lab; writes their label files (outside the data root)."""
    jobs = []
    for t_i, (dataset, sub) in enumerate((("WBC1", "DATA-VAL"), ("WBC2", "DATA-TEST"))):
        folder = root / dataset / sub
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, stream + t_i])
        labels = _target_labels(n_target, rng, prior)
        # file numbers with gaps, as in the real sets
        numbers = np.sort(rng.choice(int(n_target * 1.04), size=n_target, replace=False))
        rows = []
        for i, (num, c) in enumerate(zip(numbers, labels)):
            jobs.append((domain, c, [seed, stream + t_i, i], folder / f"{num}.TIF"))
            rows.append({"Image": f"{num}.TIF", "Label": CLASSES[c], "LabelID": CLASS_TO_ID[CLASSES[c]]})
        write_csv(labels_dir / f"{dataset}.csv", pd.DataFrame(rows))
    return jobs


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (copy where links are not possible)."""
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        to = dst / f.relative_to(src)
        to.parent.mkdir(parents=True, exist_ok=True)
        if not to.exists():
            try:
                os.link(f, to)
            except OSError:
                shutil.copy2(f, to)


def _run(fn, jobs, workers: int) -> None:
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(fn, jobs, chunksize=16))
    else:
        for job in jobs:
            fn(job)


def stamp(seed: int, scale: float, n_target: int) -> dict:
    return {"version": VERSION, "seed": seed, "scale": scale, "n_target": n_target}


def is_current(out: Path, seed: int = 0, scale: float = 0.02, n_target: int = 240, study: bool = False) -> bool:
    """Whether `out` holds the demo this generator writes with these settings (its version stamp)."""
    want = stamp(seed, scale, n_target)
    roots = [Path(out) / "data"] + ([Path(out) / "lab_b" / "data", Path(out) / "oracle" / "data"] if study else [])
    for root in roots:
        f = root / "demo.json"
        if not f.is_file() or json.loads(f.read_text()) != want or not (root / "splits" / "WBC2.csv").is_file():
            return False
    return True


def generate(out: Path, seed: int = 0, scale: float = 0.02, n_target: int = 240, study: bool = False,
             workers: int | None = None) -> Path:
    """Write the demo under `out`: `out/data` (the data root, with splits/) and `out/labels`; with
    `study`, also `out/lab_b/{data,labels}` (the second lab) and `out/oracle/data` (the demo lab's
    labelled images in the sources' layout). Anything already there is replaced.

    Deterministic: the same seed and sizes give the same bytes, whatever `workers`. Returns the data root.
    """
    out = Path(out)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    root = out / "data"
    for old in (root, out / "labels", out / "lab_b", out / "oracle"):
        if old.exists():
            shutil.rmtree(old)
    counts = demo_counts(scale)
    _run(_write_source_image, _source_jobs(root, seed, counts), workers)
    _run(_write_target_image, _target_jobs(root, out / "labels", seed, n_target, "WBC", 10, TARGET_PRIOR), workers)
    build_from_disk(root, root / "splits")
    roots = [root]
    if study:
        lab_b = out / "lab_b" / "data"
        for d in ("Acevedo_20", "Matek_19"):
            _link_tree(root / d, lab_b / d)
        _run(_write_target_image, _target_jobs(lab_b, out / "lab_b" / "labels", seed, n_target, "lab_b", 20, LAB_B_PRIOR),
             workers)
        build_from_disk(lab_b, lab_b / "splits")
        oracle = out / "oracle" / "data"
        _run(_write_source_image, _source_jobs(oracle, seed, counts, lambda d: "WBC", stream=30), workers)
        for d in ("WBC1", "WBC2"):
            _link_tree(root / d, oracle / d)
        build_from_disk(oracle, oracle / "splits")
        roots += [lab_b, oracle]
    for r in roots:  # the stamp last: a half-written demo is never taken for a current one
        write_json(r / "demo.json", stamp(seed, scale, n_target))
    return root


if __name__ == "__main__":
    import time

    import typer

    from .errors import user_errors

    @user_errors
    def main(
        dest: Path = typer.Option(Path("demo"), help="Folder to write: DEST/data is the data root, DEST/labels the target labels."),
        seed: int = typer.Option(0, help="Seed; the same seed writes the same bytes."),
        scale: float = typer.Option(0.02, help="Share of the real source counts to draw (0.02: about 700 images)."),
        n_target: int = typer.Option(240, help="Images in each of WBC1 and WBC2."),
        study: bool = typer.Option(False, "--study", help="Also write DEST/lab_b (a second target lab, for final "
                                                          "reports) and DEST/oracle (the demo lab's labelled images)."),
        if_stale: bool = typer.Option(False, "--if-stale", help="Only write when DEST holds no demo of this version "
                                                                "and these settings."),
        workers: int = typer.Option(None, help="Processes drawing images (default: the cores, at most 8)."),
    ):
        """Write the synthetic demo data set in the challenge layout (version %d)."""
        if if_stale and is_current(dest, seed, scale, n_target, study):
            print(f"demo data in {dest} are current (version {VERSION})")
            return
        t = time.time()
        root = generate(dest, seed=seed, scale=scale, n_target=n_target, study=study, workers=workers)
        print(f"demo data version {VERSION} written to {root} (labels in {dest / 'labels'}) in {time.time() - t:.1f}s")

    main.__doc__ = main.__doc__ % VERSION
    typer.run(main)
