"""A bank of random target labs: the same two labelled sources, and many unlabelled labs that differ
from them (and from each other) the ways real labs differ.

    python -m studies.lab_bank --dest bank --labs 1-6,101-110,demo,lab_b

Each lab is named by its seed (`lab7`) and drawn from RANGES: stain per part (nucleus, cytoplasm,
granules, red cells: hue, saturation and brightness), a global hue turn, saturation and contrast, the
stain mix, focus blur, sensor noise, JPEG quality, the true pixel scale against the stated one, uneven
illumination, background and red-cell density, and a class prior from a Dirichlet between a routine lab
(segmented neutrophils and lymphocytes) and a leukaemia clinic (blasts), rare classes at 1% or more.
Skewed labs (`skew3`, opt-in by name; `lab<seed>` labs are unchanged): one class at 60-95% of the cells
(even seeds) or 1-4 absent classes (odd seeds).
Stress labs (`stress7`, opt-in by name), where AdaBN is known to fail, one kind per seed % 5 (STRESS holds the
ranges): label shift (one class at 60-95% and 1-3 classes absent), a small WBC1 (16, 32 or 64 cells; WBC2 keeps its
size), a WBC1 prior unlike WBC2's (the statistics stored from WBC1 meet another prior), a single patient (2-4
classes present), and shifts beyond colour (cell and nucleus size, granule density, overlapping and smudged cells).
The demo lab (`demo`) and lab B (`lab_b`) are in the bank too, as the demo draws them; RANGES contain
their values with room beyond (a test checks it).

Layout: BANK/sources/{Acevedo_20,Matek_19} (byte-identical to the demo's sources), and per lab
BANK/<lab>/data (a data root: the sources hard-linked, so every lab shares the sources' cache; WBC1,
WBC2, splits/), BANK/<lab>/labels/WBC{1,2}.csv (read by studies only) and BANK/<lab>/lab.json (its
parameters). A lab already written with the same settings is kept.
"""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import typer

from submission.data.classes import CLASSES
from submission.data.files import write_json
from submission.data.splits import build_from_disk
from submission.demo.cells import DOMAINS, Domain
from submission.demo.lab import (
    LAB_B_PRIOR,
    TARGET_PRIOR,
    VERSION,
    _link_tree,
    _run,
    _source_jobs,
    _target_jobs,
    _write_source_image,
    _write_target_image,
    demo_counts,
)
from submission.errors import KitError, user_errors

BANK_VERSION = 1  # bump when a drawn lab changes

# Every factor's range (uniform unless said). Per-channel and per-part factors draw each value separately.
RANGES = {
    "stain_diag": (0.75, 1.0),  # diagonal of the 3x3 stain mix
    "stain_off": (0.0, 0.08),  # its off-diagonal entries
    "offset": (-0.06, 0.06),  # RGB added after the mix
    "nucleus_shift": (-0.16, 0.16),  # RGB added to the nucleus and basophilic granules
    "cyto_shift": (-0.16, 0.16),  # RGB added to cytoplasm, red cells and eosinophilic granules
    "part_hue": (-25.0, 25.0),  # degrees, each of nucleus, cytoplasm, granules, red cells
    "part_saturation": (0.7, 1.3),
    "part_brightness": (0.85, 1.15),
    "hue_turn": (-20.0, 20.0),  # degrees, the whole image
    "saturation": (0.5, 1.5),
    "contrast": (0.7, 1.3),
    "blur_sigma": (0.3, 4.0),  # px at the lab's own resolution
    "noise": (1.0, 10.0),  # std on 0..255
    "jpeg_quality": (30, 95),  # drawn for 70% of labs; the others save without JPEG (0)
    "scale_error": (0.85, 1.15),  # true px/um = stated x this
    "illumination": (0.0, 0.3),
    "background": (0.9, 1.03),
    "rbc_max": (2, 14),  # red cells per image: uniform in [rbc_max // 3, rbc_max)
    "leukaemia_share": (0.0, 1.0),  # mix of the two prior shapes below
}
PRIOR_CONCENTRATION = 30.0  # Dirichlet concentration around the mixed prior shape
RARE_MIN = 0.01  # every class at least this share of the lab's cells
# Prior shapes in CLASSES order: basophil, eosinophil, erythroblast, myeloblast, promyelocyte, myelocyte,
# metamyelocyte, banded and segmented neutrophil, monocyte, typical lymphocyte.
ROUTINE = [0.015, 0.04, 0.015, 0.015, 0.015, 0.02, 0.02, 0.06, 0.42, 0.08, 0.30]
LEUKAEMIA = [0.02, 0.03, 0.04, 0.38, 0.06, 0.05, 0.03, 0.04, 0.16, 0.07, 0.12]
NAMED = {"demo": ("WBC", TARGET_PRIOR, 10), "lab_b": ("lab_b", LAB_B_PRIOR, 20)}  # domain, prior, stream


def draw_lab(seed: int) -> tuple[Domain, list[float]]:
    """The lab of this seed: how its images look, and its class prior."""
    rng = np.random.default_rng([7919, seed])
    u = lambda name, n=None: rng.uniform(*RANGES[name], n)  # noqa: E731
    stain = np.diag(u("stain_diag", 3)) + (1 - np.eye(3)) * u("stain_off", (3, 3))
    part = lambda: (float(u("part_hue")), float(u("part_saturation")), float(u("part_brightness")))  # noqa: E731
    rbc_max = int(rng.integers(RANGES["rbc_max"][0], RANGES["rbc_max"][1] + 1))
    domain = Domain(
        px_per_um=11.52, size_hw=(288, 288), stain=_tuple(stain), offset=_tuple(u("offset", 3)),
        blur_sigma=float(u("blur_sigma")), noise=float(u("noise")), scale_error=float(u("scale_error")),
        nucleus_shift=_tuple(u("nucleus_shift", 3)), cyto_shift=_tuple(u("cyto_shift", 3)),
        illumination=float(u("illumination")),
        jpeg_quality=int(rng.integers(RANGES["jpeg_quality"][0], RANGES["jpeg_quality"][1] + 1)) if rng.uniform() < 0.7 else 0,
        nucleus_hsv=part(), cyto_hsv=part(), granule_hsv=part(), rbc_hsv=part(),
        hue_turn=float(u("hue_turn")), saturation=float(u("saturation")), contrast=float(u("contrast")),
        background=float(u("background")), rbc_range=(rbc_max // 3, rbc_max))
    w = float(u("leukaemia_share"))
    shape = w * np.array(LEUKAEMIA) + (1 - w) * np.array(ROUTINE)
    prior = np.maximum(rng.dirichlet(PRIOR_CONCENTRATION * shape / shape.sum()), RARE_MIN)
    return domain, [float(p) for p in prior / prior.sum()]


SKEW = {"dominant": (0.6, 0.95), "absent": (1, 4)}  # skew<seed> labs: a dominant class's share, absent classes


def draw_skewed(seed: int) -> tuple[Domain, list[float]]:
    """skew<seed>: a lab drawn like lab<seed + 5000> whose prior is skewed: with even seeds one class holds 60-95%
    of the cells, with odd seeds 1 to 4 classes are absent; either way the rest keep the drawn prior's shape."""
    domain, prior = draw_lab(seed + 5000)
    rng = np.random.default_rng([7919, seed, 1])
    prior = np.array(prior)
    if seed % 2 == 0:
        dom = int(rng.integers(len(prior)))
        share = rng.uniform(*SKEW["dominant"])
        rest = np.delete(prior, dom) / np.delete(prior, dom).sum() * (1 - share)
        prior = np.insert(rest, dom, share)
    else:
        gone = rng.choice(len(prior), int(rng.integers(SKEW["absent"][0], SKEW["absent"][1] + 1)), replace=False)
        prior[gone] = 0.0
    return domain, [float(p) for p in prior / prior.sum()]


# Stress labs (stress<seed>, opt-in by name; every other lab is unchanged): the kinds of target where AdaBN is known
# to fail, one kind per seed (seed % 5), each drawn on a lab drawn like lab<seed + 9000>. Ranges fixed before any
# method ran on them.
STRESS_KINDS = ("label", "small", "prior", "patient", "morphology")
STRESS = {
    "dominant": (0.6, 0.95),  # label: one class's share of the cells ...
    "absent": (1, 3),  # ... and 1 to 3 other classes absent
    "wbc1_sizes": (16, 32, 64),  # small: WBC1's cells (WBC2 keeps the bank's size)
    "prior_mix": (0.7, 1.0),  # prior: WBC1's prior is the other end of routine <-> leukaemia, this far
    "present": (2, 4),  # patient: classes present, drawn by the lab's prior
    "cell_scale": (0.8, 1.25),  # morphology: the renderer's shifts beyond colour
    "nucleus_scale": (0.85, 1.15),
    "granule_density": (0.4, 1.6),
    "overlap": (0.15, 0.45),
    "smudge": (0.1, 0.3),
}


def stress_kind(seed: int) -> str:
    return STRESS_KINDS[seed % len(STRESS_KINDS)]


def draw_stress(seed: int) -> tuple[Domain, list[float], dict]:
    """stress<seed>: (domain, WBC2's prior, WBC1's overrides {"n", "prior"}) of a lab of the kind `stress_kind(seed)`."""
    base = 9000 + seed
    domain, prior = draw_lab(base)
    rng = np.random.default_rng([7919, seed, 2])
    kind, prior, wbc1 = stress_kind(seed), np.array(prior), {}
    if kind == "label":
        dom = int(rng.integers(len(prior)))
        others = np.delete(np.arange(len(prior)), dom)
        gone = rng.choice(others, int(rng.integers(STRESS["absent"][0], STRESS["absent"][1] + 1)), replace=False)
        prior[gone] = 0.0
        share = rng.uniform(*STRESS["dominant"])
        rest = np.delete(prior, dom)
        prior = np.insert(rest / rest.sum() * (1 - share), dom, share)
    elif kind == "small":
        wbc1["n"] = int(rng.choice(STRESS["wbc1_sizes"]))
    elif kind == "prior":  # WBC1 drawn with the prior shape at the other end from WBC2's
        leuk = float(np.dot(prior, LEUKAEMIA) > np.dot(prior, ROUTINE))
        mix = rng.uniform(*STRESS["prior_mix"])
        shape = (1 - leuk) * (mix * np.array(LEUKAEMIA) + (1 - mix) * np.array(ROUTINE)) \
            + leuk * (mix * np.array(ROUTINE) + (1 - mix) * np.array(LEUKAEMIA))
        p1 = np.maximum(rng.dirichlet(PRIOR_CONCENTRATION * shape / shape.sum()), RARE_MIN)
        wbc1["prior"] = [float(v) for v in p1 / p1.sum()]
    elif kind == "patient":
        k = int(rng.integers(STRESS["present"][0], STRESS["present"][1] + 1))
        keep = rng.choice(len(prior), k, replace=False, p=prior)
        prior = np.where(np.isin(np.arange(len(prior)), keep), prior, 0.0)
    else:  # morphology
        u = lambda name: round(float(rng.uniform(*STRESS[name])), 6)  # noqa: E731
        domain = dataclasses.replace(domain, **{f: u(f) for f in ("cell_scale", "nucleus_scale", "granule_density",
                                                                  "overlap", "smudge")})
    return domain, [float(p) for p in prior / prior.sum()], wbc1


def _tuple(a) -> tuple:
    a = np.asarray(a)
    return tuple(_tuple(r) for r in a) if a.ndim > 1 else tuple(round(float(v), 6) for v in a)


def out_of_ranges(domain: Domain) -> list[str]:
    """The factors of `domain` outside RANGES (empty: the bank's ranges contain this lab)."""
    lo_hi = lambda name, v: RANGES[name][0] <= v <= RANGES[name][1]  # noqa: E731
    stain = np.asarray(domain.stain)
    checks = {
        "stain_diag": all(lo_hi("stain_diag", v) for v in np.diag(stain)),
        "stain_off": all(lo_hi("stain_off", v) for v in stain[~np.eye(3, dtype=bool)]),
        "offset": all(lo_hi("offset", v) for v in domain.offset),
        "nucleus_shift": all(lo_hi("nucleus_shift", v) for v in domain.nucleus_shift),
        "cyto_shift": all(lo_hi("cyto_shift", v) for v in domain.cyto_shift),
        "part_hue": all(lo_hi("part_hue", p[0]) for p in _parts(domain)),
        "part_saturation": all(lo_hi("part_saturation", p[1]) for p in _parts(domain)),
        "part_brightness": all(lo_hi("part_brightness", p[2]) for p in _parts(domain)),
        **{k: lo_hi(k, getattr(domain, k)) for k in ("hue_turn", "saturation", "contrast", "blur_sigma", "noise",
                                                    "scale_error", "illumination", "background")},
        "jpeg_quality": domain.jpeg_quality == 0 or lo_hi("jpeg_quality", domain.jpeg_quality),
        "rbc_max": lo_hi("rbc_max", domain.rbc_range[1]),
    }
    return [k for k, ok in checks.items() if not ok]


def _parts(domain: Domain):
    return (domain.nucleus_hsv, domain.cyto_hsv, domain.granule_hsv, domain.rbc_hsv)


def lab_spec(name: str) -> tuple[Domain, list[float], int]:
    """(domain, prior, stream) of a lab by name: `demo`, `lab_b` or `lab<seed>`."""
    if name in NAMED:
        domain, prior, stream = NAMED[name]
        return DOMAINS[domain], list(prior), stream
    if name.startswith("lab") and name[3:].isdigit():
        return (*draw_lab(int(name[3:])), 1000 + 2 * int(name[3:]))  # own cells: streams apart from the demo's
    if name.startswith("skew") and name[4:].isdigit():
        return (*draw_skewed(int(name[4:])), 30000 + 2 * int(name[4:]))
    if name.startswith("stress") and name[6:].isdigit():
        return (*draw_stress(int(name[6:]))[:2], 40000 + 2 * int(name[6:]))
    raise KitError(f"unknown lab {name!r}: demo, lab_b, lab<seed> (e.g. lab7), skew<seed> (a skewed prior) or "
                   f"stress<seed> (a stress lab: {', '.join(STRESS_KINDS)}, by seed % {len(STRESS_KINDS)})")


def wbc1_spec(name: str) -> dict:
    """WBC1's own size or prior ({"n", "prior"}) where a stress lab gives it one; {} for every other lab."""
    return draw_stress(int(name[6:]))[2] if name.startswith("stress") and name[6:].isdigit() else {}


def parse_labs(text: str) -> list[str]:
    """'1-3,101,demo,stress1-2' -> ['lab1', 'lab2', 'lab3', 'lab101', 'demo', 'stress1', 'stress2']."""
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        ranged = re.fullmatch(r"([a-z]*)(\d+)-(\d+)", part)
        if ranged:
            kind, a, b = ranged.group(1) or "lab", int(ranged.group(2)), int(ranged.group(3))
            names += [f"{kind}{i}" for i in range(a, b + 1)]
        else:
            names.append(f"lab{part}" if part.isdigit() else part)
    for n in names:
        lab_spec(n)
    return names


def _stamp(name: str, seed: int, scale: float, n_target: int) -> dict:
    domain, prior, stream = lab_spec(name)
    stamp = {"lab": name, "bank_version": BANK_VERSION, "demo_version": VERSION, "seed": seed, "scale": scale,
             "n_target": n_target, "stream": stream, "prior": dict(zip(CLASSES, prior)),
             "domain": dataclasses.asdict(domain)}
    wbc1 = wbc1_spec(name)
    if wbc1:  # stress labs only: every other lab's stamp is as before
        stamp["kind"] = stress_kind(int(name[6:]))
        stamp["wbc1"] = {"n": wbc1.get("n", n_target), "prior": dict(zip(CLASSES, wbc1.get("prior", prior)))}
    elif name.startswith("stress"):
        stamp["kind"] = stress_kind(int(name[6:]))
    return stamp


def _written(path: Path, want: dict) -> bool:
    return path.is_file() and json.loads(path.read_text()) == json.loads(json.dumps(want))


def write_sources(bank: Path, seed: int = 0, scale: float = 0.02, workers: int = 1) -> Path:
    """BANK/sources: the demo's two labelled sources (the same bytes as `submission.demo` writes)."""
    root = Path(bank) / "sources"
    want = {"demo_version": VERSION, "seed": seed, "scale": scale}
    if not _written(root / "sources.json", want):
        _run(_write_source_image, _source_jobs(root, seed, demo_counts(scale)), workers)
        write_json(root / "sources.json", want)
    return root


def write_lab(bank: Path, name: str, seed: int = 0, scale: float = 0.02, n_target: int = 240, workers: int = 1) -> Path:
    """BANK/<name>: the lab's data root (sources linked, WBC1/WBC2 drawn, splits), labels and lab.json."""
    bank = Path(bank)
    sources = write_sources(bank, seed, scale, workers)
    want = _stamp(name, seed, scale, n_target)
    lab = bank / name
    if _written(lab / "lab.json", want):
        return lab / "data"
    domain, prior, stream = lab_spec(name)
    root = lab / "data"
    for old in (root / "WBC1", root / "WBC2", root / "splits", lab / "labels", lab / "lab.json"):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for d in ("Acevedo_20", "Matek_19"):
        _link_tree(sources / d, root / d)
    jobs = _target_jobs(root, lab / "labels", seed, n_target, domain, stream, prior, wbc1_spec(name))
    _run(_write_target_image, jobs, workers)
    build_from_disk(root, root / "splits")
    write_json(lab / "lab.json", want)  # last: a half-written lab is never taken for a finished one
    return root


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    dest: Path = typer.Option(Path("bank"), help="Bank folder: DEST/sources and one folder per lab."),
    labs: str = typer.Option("1-6,101-110,demo,lab_b", help="Labs: seeds and ranges (1-6), demo, lab_b, "
                                                           "skew<seed>, stress<seed>."),
    n_target: int = typer.Option(240, help="Images in each of a lab's WBC1 and WBC2."),
    scale: float = typer.Option(0.02, help="Share of the real source counts (as the demo's --scale)."),
    workers: int = typer.Option(None, help="Processes drawing images (default: the cores, at most 8)."),
):
    """Write the lab bank: the demo's sources once, and each lab's WBC1/WBC2, labels and parameters."""
    from submission.progress import data_progress

    names = parse_labs(labs)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    with data_progress() as progress:
        task = progress.add_task("labs", total=len(names))
        for name in names:
            write_lab(dest, name, scale=scale, n_target=n_target, workers=workers)
            progress.advance(task)
    print(f"{len(names)} labs in {dest}")


if __name__ == "__main__":
    app()
