"""Import the original public releases, or a lab's own folder of images, into the challenge layout.

    python -m submission.importer acevedo PBC_dataset_normal_DIB --data-root data
    python -m submission.importer matek AML-Cytomorphology_LMU --data-root data
    python -m submission.importer folder /path/to/lab/images --data-root data --name LAB --px-per-um 11.2

Files are hard-linked into DATA_ROOT (copied where a link cannot be made, e.g. across file
systems); the source tree is never touched. Each import first plans every file (taken, or skipped
and why), prints a per-class table, and then, unless --dry-run, carries the plan out. A second run
changes nothing; a different tree already at the destination is refused, never overwritten.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer

from submission.data.classes import CLASSES
from submission.data.files import write_json
from submission.data.splits import IMAGE_SUFFIXES
from submission.errors import KitError, user_errors

# Acevedo 2020 (PBC_dataset_normal_DIB): the class is the file name's prefix.
ACEVEDO_PREFIXES = {"BA": "basophil", "EO": "eosinophil", "ERB": "erythroblast", "PMY": "promyelocyte",
                    "MY": "myelocyte", "MMY": "metamyelocyte", "BNE": "neutrophil_banded",
                    "SNE": "neutrophil_segmented", "MO": "monocyte", "LY": "lymphocyte_typical"}
ACEVEDO_UNUSED = {"PLATELET": "platelets are not used", "PLT": "platelets are not used"}
# Matek 2019 (AML-Cytomorphology_LMU): the class is the folder's code.
MATEK_CODES = {"BAS": "basophil", "EBO": "erythroblast", "EOS": "eosinophil", "LYT": "lymphocyte_typical",
               "MMZ": "metamyelocyte", "MON": "monocyte", "MOB": "monocyte", "MYB": "myelocyte", "MYO": "myeloblast",
               "NGB": "neutrophil_banded", "NGS": "neutrophil_segmented", "PMO": "promyelocyte"}
MATEK_UNUSED = {"KSC": "smudge cells are not used", "LYA": "atypical lymphocytes are not used",
                "PMB": "PMB is not used"}
DATASET_FILE = "dataset.json"


@dataclass
class Plan:
    """What an import will do: (source, destination relative to the data root, class) to take, and
    (source, class or '', reason) skipped."""

    dataset: str
    take: list = field(default_factory=list)
    skip: list = field(default_factory=list)

    def table_rows(self) -> list[tuple[str, int, dict]]:
        """(class, taken, {reason: count}) per class, classes in the kit's order, then the others."""
        taken, skipped = {}, {}
        for _, _, c in self.take:
            taken[c] = taken.get(c, 0) + 1
        for _, c, why in self.skip:
            skipped.setdefault(c or "-", {}).setdefault(why, 0)
            skipped[c or "-"][why] += 1
        order = [c for c in CLASSES if c in taken or c in skipped] + sorted((set(taken) | set(skipped)) - set(CLASSES))
        return [(c, taken.get(c, 0), skipped.get(c, {})) for c in order]


def _images(src: Path):
    """Every file under src (any nesting), sorted; hidden files and folders included, to be reported."""
    return sorted(p for p in src.rglob("*") if p.is_file())


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _readable(p: Path) -> str | None:
    from submission.data.images import ImageReadError, read_rgb

    try:
        read_rgb(p)
        return None
    except ImageReadError as e:
        return str(e).split(": ", 1)[-1]


def _finish(plan: Plan, candidates, check_readable: bool) -> Plan:
    """Candidates (src, dest, class) -> taken, or skipped as unreadable or duplicate."""
    seen = {}
    for src, dest, cls in candidates:
        if dest.lower() in seen:
            plan.skip.append((src, cls, f"duplicate of {seen[dest.lower()]}"))
            continue
        problem = _readable(src) if check_readable else None
        if problem:
            plan.skip.append((src, cls, f"unreadable ({problem})"))
            continue
        seen[dest.lower()] = src.name
        plan.take.append((src, dest, cls))
    return plan


def _plan(dataset: str, src: Path, classify, check_readable: bool) -> Plan:
    """Every file under src: not an image, or classify(path) -> (class, destination, None) to take
    it, or (class or '', None, reason) to skip it; then unreadable files and duplicates are skipped."""
    plan, candidates = Plan(dataset), []
    for p in _images(src):
        if not _is_image(p):
            plan.skip.append((p, "", "not an image"))
            continue
        cls, dest, why = classify(p)
        if why:
            plan.skip.append((p, cls, why))
        else:
            candidates.append((p, dest, cls))
    return _finish(plan, candidates, check_readable)


def _acevedo_class(p: Path):
    prefix = p.stem.split("_")[0].upper()
    if prefix in ACEVEDO_UNUSED or p.parent.name.lower() == "platelet":
        return "platelet", None, "platelets are not used"
    if prefix not in ACEVEDO_PREFIXES:
        return "", None, f"unknown prefix {prefix}"
    cls = ACEVEDO_PREFIXES[prefix]
    return cls, f"Acevedo_20/{cls}/{p.name}", None


def _matek_class(p: Path):
    code = p.parent.name.upper()
    if code in MATEK_UNUSED:
        return code, None, MATEK_UNUSED[code]
    if code not in MATEK_CODES:
        return "", None, f"unknown folder {p.parent.name}"
    cls = MATEK_CODES[code]
    return cls, f"Matek_19/{cls}/{p.name}", None


def plan_acevedo(src: Path, check_readable: bool = True) -> Plan:
    """PBC_dataset_normal_DIB: the class is the file name's prefix."""
    return _plan("Acevedo_20", src, _acevedo_class, check_readable)


def plan_matek(src: Path, check_readable: bool = True) -> Plan:
    """AML-Cytomorphology_LMU: the class is the folder's code."""
    return _plan("Matek_19", src, _matek_class, check_readable)


def plan_folder(src: Path, name: str, check_readable: bool = True) -> Plan:
    """A lab's unlabelled images, any nesting: DATA_ROOT/NAME/<the same relative path>."""
    if not name or "/" in name or name in ("Acevedo_20", "Matek_19", "splits"):
        raise KitError(f"--name must be a plain folder name other than the sources' and 'splits', not {name!r}")
    return _plan(name, src, lambda p: ("unlabelled", f"{name}/{p.relative_to(src).as_posix()}", None), check_readable)


def compare_with_list(plan: Plan, listed: list[str]) -> dict:
    """found / missing / extra against a challenge list of relative paths."""
    have = {dest for _, dest, _ in plan.take}
    want = set(listed)
    return {"found": len(have & want), "missing": sorted(want - have), "extra": sorted(have - want)}


def restrict_to(plan: Plan, listed: list[str]) -> Plan:
    want = set(listed)
    out = Plan(plan.dataset, skip=list(plan.skip))
    for src, dest, cls in plan.take:
        (out.take.append((src, dest, cls)) if dest in want else out.skip.append((src, cls, "not in the challenge's list")))
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        return False
    if a.stat().st_size != b.stat().st_size:
        return False
    return _digest(a) == _digest(b)


def _digest(p: Path) -> str:
    h = hashlib.sha1()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def conflicts(plan: Plan, data_root: Path) -> list[str]:
    """Why the destination is a different tree (empty: new, or exactly this import already)."""
    problems = []
    planned = {dest for _, dest, _ in plan.take}
    for src, dest, _ in plan.take:
        target = data_root / dest
        if target.exists() and not _same_file(src, target):
            problems.append(f"{dest} exists with other content")
    top = data_root / plan.dataset
    if top.is_dir():
        extra = [p.relative_to(data_root).as_posix() for p in top.rglob("*")
                 if p.is_file() and _is_image(p) and p.relative_to(data_root).as_posix() not in planned]
        if extra:
            problems.append(f"{len(extra)} images in {top} are not part of this import (e.g. {extra[0]})")
    return problems


def carry_out(plan: Plan, data_root: Path) -> dict:
    """Link (or copy) every planned file that is not there yet. Returns counts of linked, copied, present."""
    counts = {"linked": 0, "copied": 0, "already there": 0}
    for src, dest, _ in plan.take:
        target = data_root / dest
        if target.exists():
            counts["already there"] += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.importing")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
            counts["linked"] += 1
        except OSError:  # another file system, or links not allowed: copy
            shutil.copy2(src, tmp)
            counts["copied"] += 1
        os.replace(tmp, target)
    return counts


def read_dataset_info(data_root: Path, name: str) -> dict | None:
    """DATA_ROOT/NAME/dataset.json of an imported lab folder (its scale), or None."""
    f = Path(data_root) / name / DATASET_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def run_import(kind: str, src: Path, data_root: Path, name: str | None = None, px_per_um: float | None = None,
               lists: Path | None = None, only_listed: bool = False, dry_run: bool = False, check_readable: bool = True,
               console=None):
    """Plan, report, check and (unless dry_run) carry out one import. Returns (plan, counts or None, comparison)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    src, data_root = Path(src), Path(data_root)
    if not src.is_dir():
        raise KitError(f"no folder {src}")
    if src.resolve() == data_root.resolve() or data_root.resolve().is_relative_to(src.resolve()):
        raise KitError("--data-root must lie outside the source tree (the source is never touched)")
    if kind == "folder":
        if name is None or px_per_um is None:
            raise KitError("a lab folder needs --name and --px-per-um (its microscope's pixels per micrometre)")
        if not px_per_um > 0:
            raise KitError(f"--px-per-um must be positive, not {px_per_um}")
        plan = plan_folder(src, name, check_readable)
    elif kind == "acevedo":
        plan = plan_acevedo(src, check_readable)
    elif kind == "matek":
        plan = plan_matek(src, check_readable)
    else:
        raise KitError(f"unknown import {kind!r}: acevedo, matek or folder")
    comparison = None
    if kind != "folder":
        listed = _listed(plan.dataset, lists)
        if listed is not None:
            comparison = compare_with_list(plan, listed)
            if only_listed:
                plan = restrict_to(plan, listed)
    if not plan.take:
        raise KitError(f"nothing to import from {src}: {len(plan.skip)} files, none usable (is it the right folder?)")

    table = Table(title=f"{plan.dataset} from {src}" + (" (dry run: nothing written)" if dry_run else ""))
    for col in ("class", "taken", "skipped (why)"):
        table.add_column(col, justify="right" if col == "taken" else "left")
    for cls, n, why in plan.table_rows():
        table.add_row(cls, str(n), "; ".join(f"{k}: {v}" for k, v in sorted(why.items())) or "-")
    table.add_row("[bold]total[/]", f"[bold]{len(plan.take)}[/]", f"{len(plan.skip)} skipped")
    console.print(table)
    if comparison is not None:
        console.print(f"against the challenge's list: {comparison['found']} found, {len(comparison['missing'])} missing"
                      f"{' (e.g. ' + comparison['missing'][0] + ')' if comparison['missing'] else ''}, "
                      f"{len(comparison['extra'])} not in the list" + ("" if only_listed else
                      " (kept; --only-listed imports the listed ones alone)"), highlight=False)
    problems = conflicts(plan, data_root)
    if problems:
        raise KitError(f"{data_root} already holds a different {plan.dataset} tree, nothing was changed: "
                       + "; ".join(problems[:3]) + ". Import into a fresh --data-root, or remove that folder")
    info = None
    if kind == "folder":
        info = {"name": name, "px_per_um": px_per_um, "source": str(src.resolve()), "images": len(plan.take)}
        old = read_dataset_info(data_root, name)
        if old is not None and old.get("px_per_um") != px_per_um:
            raise KitError(f"{data_root / name / DATASET_FILE} says {old.get('px_per_um')} px/um, not {px_per_um}: "
                           "the same images cannot have two scales; nothing was changed")
    if dry_run:
        return plan, None, comparison
    counts = carry_out(plan, data_root)
    if info is not None:
        if read_dataset_info(data_root, name) != info:
            write_json(data_root / name / DATASET_FILE, info)
    console.print(f"{plan.dataset}: {counts['linked']} linked, {counts['copied']} copied, {counts['already there']} "
                  f"already there -> {data_root / plan.dataset}", highlight=False)
    return plan, counts, comparison


def _listed(dataset: str, lists: Path | None) -> list[str] | None:
    """The challenge's relative paths for a source: from a split folder (default: the kit's data_splits/)."""
    from submission.data.splits import REPO_SPLITS, split_file

    folder = Path(lists) if lists else REPO_SPLITS
    f = split_file(folder, dataset)
    if not f.is_file():
        return None
    import pandas as pd

    return pd.read_csv(f, dtype=str, keep_default_na=False)["path"].tolist()


app = typer.Typer(add_completion=False)


@app.command()
@user_errors
def main(
    kind: Annotated[str, typer.Argument(help="acevedo (PBC_dataset_normal_DIB), matek (AML-Cytomorphology_LMU) or "
                                             "folder (a lab's unlabelled images).")],
    src: Annotated[Path, typer.Argument(help="The release's folder, or the lab's folder (any nesting).")],
    data_root: Annotated[Path, typer.Option(help="Data root to import into (the challenge layout).")] = Path("data"),
    name: Annotated[Optional[str], typer.Option(help="folder: the name of the lab's data set (DATA_ROOT/NAME).")] = None,
    px_per_um: Annotated[Optional[float], typer.Option("--px-per-um", help="folder: pixels per micrometre of the "
                                                       "lab's microscope; the 25 um crop follows from it.")] = None,
    splits: Annotated[Optional[Path], typer.Option(help="Split folder with the challenge's lists to compare with "
                                                        "(default: the kit's data_splits/).")] = None,
    only_listed: Annotated[bool, typer.Option("--only-listed", help="Import only the files the challenge's list "
                                                                    "names (the releases hold more).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and report, write nothing.")] = False,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Decode every image and skip unreadable ones.")] = True,
):
    """Import a public release or a lab's folder into DATA_ROOT in the challenge layout (hard links)."""
    run_import(kind, src, data_root, name, px_per_um, splits, only_listed, dry_run, check)


if __name__ == "__main__":
    app()
