"""What an import will do, planned before anything is written: each file of a public release or a lab's folder
taken (with its class and destination in the challenge layout) or skipped and why."""

from dataclasses import dataclass, field
from pathlib import Path

from submission.data.classes import CLASSES
from submission.data.splits import IMAGE_SUFFIXES
from submission.errors import KitError

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


def is_image(p: Path) -> bool:
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
        if not is_image(p):
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
