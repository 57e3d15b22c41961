"""Import the original public releases, or a lab's own folder of images, into the challenge layout.

    python -m submission.data.importer acevedo PBC_dataset_normal_DIB --data-root data
    python -m submission.data.importer matek AML-Cytomorphology_LMU --data-root data
    python -m submission.data.importer folder /path/to/lab/images --data-root data --name LAB --px-per-um 11.2

Files are hard-linked into DATA_ROOT (copied where a link cannot be made, e.g. across file
systems); the source tree is never touched. Each import first plans every file (taken, or skipped
and why), prints a per-class table, and then, unless --dry-run, carries the plan out. A second run
changes nothing; a different tree already at the destination is refused, never overwritten.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from submission.data.files import write_json
from submission.data.import_plan import (
    Plan,
    compare_with_list,
    is_image,
    plan_acevedo,
    plan_folder,
    plan_matek,
    restrict_to,
)
from submission.errors import KitError, user_errors

DATASET_FILE = "dataset.json"


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
                 if p.is_file() and is_image(p) and p.relative_to(data_root).as_posix() not in planned]
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

    console = console or Console()
    src, data_root = Path(src), Path(data_root)
    if not src.is_dir():
        raise KitError(f"no folder {src}")
    if src.resolve() == data_root.resolve() or data_root.resolve().is_relative_to(src.resolve()):
        raise KitError("--data-root must lie outside the source tree (the source is never touched)")
    plan = _plan_of_kind(kind, src, name, px_per_um, check_readable)
    comparison = None
    if kind != "folder":
        listed = _listed(plan.dataset, lists)
        if listed is not None:
            comparison = compare_with_list(plan, listed)
            if only_listed:
                plan = restrict_to(plan, listed)
    if not plan.take:
        raise KitError(f"nothing to import from {src}: {len(plan.skip)} files, none usable (is it the right folder?)")

    _print_plan(console, plan, src, dry_run, comparison, only_listed)
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


def _plan_of_kind(kind: str, src: Path, name: str | None, px_per_um: float | None, check_readable: bool) -> Plan:
    if kind == "folder":
        if name is None or px_per_um is None:
            raise KitError("a lab folder needs --name and --px-per-um (its microscope's pixels per micrometre)")
        if not px_per_um > 0:
            raise KitError(f"--px-per-um must be positive, not {px_per_um}")
        return plan_folder(src, name, check_readable)
    if kind == "acevedo":
        return plan_acevedo(src, check_readable)
    if kind == "matek":
        return plan_matek(src, check_readable)
    raise KitError(f"unknown import {kind!r}: acevedo, matek or folder")


def _print_plan(console, plan: Plan, src: Path, dry_run: bool, comparison: dict | None, only_listed: bool) -> None:
    """The per-class table of what is taken and skipped, and the comparison with the challenge's list."""
    from rich.table import Table

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
