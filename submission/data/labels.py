"""A lab's few labels: the labels.csv a hematologist downloads from the lab report, read and checked.

One row per labelled cell: Split (the target split or folder the image belongs to; WBC1 and WBC2 both
name their images 0.TIF, 1.TIF, ...), Image, label (a class name, or "unsure"), LabelID. The report
adds how each cell was asked for: stratum (the predicted class it was drawn from), half ("random" or
"chosen") and p_pick (its chance of being asked), so the check can weight each cell by it.

Merging two labellers' files: python -m submission.data.labels merge A.csv B.csv --out labels.csv
"""

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from submission.data.classes import CLASS_TO_ID, CLASSES
from submission.errors import KitError, user_errors

COLUMNS = ["Split", "Image", "label", "LabelID"]
ASK_COLUMNS = ["stratum", "half", "p_pick"]
UNSURE = "unsure"  # "unsure / not a white cell": kept in the file, never used


class LabLabels:
    """The usable labels of one file: `frame` (Image, label_id, stratum, half, p_pick; p_pick NaN where the
    file does not say how the cell was asked for), the split they name and how many rows were unsure."""

    def __init__(self, frame: pd.DataFrame, split: str, unsure: int, path: Path):
        self.frame, self.split, self.unsure, self.path = frame.reset_index(drop=True), split, unsure, Path(path)

    def __len__(self):
        return len(self.frame)

    @property
    def images(self) -> list[str]:
        return self.frame["Image"].tolist()

    @property
    def ids(self) -> np.ndarray:
        return self.frame["label_id"].to_numpy(int)

    def subset(self, mask) -> "LabLabels":
        return LabLabels(self.frame[np.asarray(mask, bool)], self.split, self.unsure, self.path)

    def describe(self) -> str:
        per = np.bincount(self.ids, minlength=len(CLASSES))
        return (f"{len(self)} labelled cells of {self.split} ({int((per > 0).sum())} classes"
                + (f"; {self.unsure} marked unsure, not used" if self.unsure else "") + f") from {self.path}")


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise KitError(f"no labels file {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise KitError(f"{path} is empty: label some cells in the lab report and download labels.csv again") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise KitError(f"{path} is not a readable CSV ({str(e).splitlines()[0]})") from None
    if frame.empty:
        raise KitError(f"{path} holds no labels, only a header: label some cells in the lab report first")
    missing = [c for c in ("Split", "Image") if c not in frame] or ([] if {"label", "LabelID"} & set(frame) else ["label"])
    if missing:
        raise KitError(f"{path} has no {', '.join(missing)} column: a labels file has the columns {','.join(COLUMNS)}")
    return frame


def _label_ids(frame: pd.DataFrame, path: Path) -> pd.Series:
    """Each row's class id (-1: unsure), checking that label and LabelID name the same class."""
    names = frame["label"].str.strip() if "label" in frame else None
    ids = frame["LabelID"].str.strip() if "LabelID" in frame else None
    out = []
    for i in range(len(frame)):
        name, lid = (names.iloc[i] if names is not None else ""), (ids.iloc[i] if ids is not None else "")
        if name.lower() == UNSURE or (not name and lid in ("", "-1")):
            out.append(-1)
            continue
        if name and name not in CLASS_TO_ID:
            raise KitError(f"{path}, row {i + 2}: unknown class {name!r}; the classes are {', '.join(CLASSES)} "
                           f"(or {UNSURE})")
        if lid and not (lid.isdigit() and int(lid) < len(CLASSES)):
            raise KitError(f"{path}, row {i + 2}: unknown LabelID {lid!r}; the ids are 0 to {len(CLASSES) - 1}")
        if name and lid and CLASS_TO_ID[name] != int(lid):
            raise KitError(f"{path}, row {i + 2}: label {name} and LabelID {lid} name different classes")
        out.append(CLASS_TO_ID[name] if name else int(lid))
    return pd.Series(out, index=frame.index)


def labels_split(path) -> str:
    """The one split (or folder) whose cells a labels file labels."""
    frame = _read_frame(Path(path))
    splits = sorted(set(frame["Split"].str.strip()))
    if len(splits) > 1:
        raise KitError(f"{path} labels cells of several splits ({', '.join(splits)}): one file per split")
    return splits[0]


def read_lab_labels(path, split: str, images) -> LabLabels:
    """The labels in `path` for the cells of `split` (whose image names are `images`). Every problem
    stops with one line: no file, no rows, a wrong column, another split, an image not in the split,
    an unknown class, one image with two labels."""
    path = Path(path)
    frame = _read_frame(path)
    splits = sorted(set(frame["Split"].str.strip()))
    if len(splits) > 1:
        raise KitError(f"{path} labels cells of several splits ({', '.join(splits)}): one file per split")
    if splits[0] != split:
        raise KitError(f"{path} labels cells of {splits[0]!r}, but this command's target is {split!r}: give the "
                       f"labels of {split}, or the target they belong to")
    frame = frame.assign(Image=frame["Image"].str.strip(), label_id=_label_ids(frame, path))
    known = set(images)
    stray = [im for im in frame["Image"] if im not in known]
    if stray:
        raise KitError(f"{path}: {len(stray)} images are not in {split} (e.g. {', '.join(stray[:3])}): is it the "
                       "file of another split or folder?")
    frame = frame.drop_duplicates(["Image", "label_id"])
    twice = frame[frame["Image"].duplicated(keep=False)]
    if len(twice):
        first = twice["Image"].iloc[0]
        both = ", ".join(_name(i) for i in twice.loc[twice["Image"] == first, "label_id"])
        raise KitError(f"{path}: image {first} has two labels ({both}); merge two labellers' files with "
                       "`python -m submission.data.labels merge A.csv B.csv --out labels.csv`")
    unsure = int((frame["label_id"] < 0).sum())
    frame = frame[frame["label_id"] >= 0]
    if frame.empty:
        raise KitError(f"{path}: every cell is marked {UNSURE}; no labels to use")
    out = pd.DataFrame({"Image": frame["Image"], "label_id": frame["label_id"].astype(int),
                        "stratum": frame.get("stratum", pd.Series("", index=frame.index)),
                        "half": frame.get("half", pd.Series("", index=frame.index)),
                        "p_pick": pd.to_numeric(frame.get("p_pick", pd.Series("", index=frame.index)), errors="coerce")})
    return LabLabels(out, split, unsure, path)


def hold_out(lab: LabLabels, share: float = 1 / 3, seed: int = 0) -> tuple[LabLabels, LabLabels]:
    """(taught, held out): a share of the labels, drawn within each way of asking (stratum and half) so the
    held-out cells stay a sample with known chances (p_pick x held / labelled in their group), never teach."""
    rng = np.random.default_rng(seed)
    frame = lab.frame.copy()
    held = np.zeros(len(frame), bool)
    p = frame["p_pick"].to_numpy(float).copy()
    for _, rows in frame.groupby(["stratum", "half"], sort=True, dropna=False).groups.items():
        rows = np.asarray([frame.index.get_loc(r) for r in rows])
        n_held = len(rows) if len(rows) == 1 else max(1, int(round(len(rows) * share)))
        pick = rng.choice(rows, n_held, replace=False)
        held[pick] = True
        p[pick] = p[pick] * n_held / len(rows)
    frame["p_pick"] = p
    return LabLabels(frame[~held], lab.split, lab.unsure, lab.path), LabLabels(frame[held], lab.split, lab.unsure, lab.path)


def _name(label_id: int) -> str:
    return UNSURE if label_id < 0 else CLASSES[label_id]


def labels_frame(split: str, images, label_ids, asked: pd.DataFrame | None = None) -> pd.DataFrame:
    """A labels.csv as the report downloads it (with how each cell was asked for, when `asked` says)."""
    frame = pd.DataFrame({"Split": split, "Image": list(images), "label": [_name(int(i)) for i in label_ids],
                          "LabelID": [("" if int(i) < 0 else str(int(i))) for i in label_ids]})
    if asked is not None:
        frame = frame.merge(asked[["Image", *ASK_COLUMNS]], on="Image", how="left")
    return frame


def merge(first: pd.DataFrame, second: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two labellers' files: (the merged file, their disagreements). A cell both labelled alike keeps its
    label; one only one of them labelled keeps that; a cell they disagree on becomes unsure (listed)."""
    a, b = first.set_index("Image"), second.set_index("Image")
    if set(a["Split"]) != set(b["Split"]):
        raise KitError(f"the files label different splits ({', '.join(sorted(set(a['Split']) | set(b['Split'])))})")
    both = a.index.intersection(b.index)
    differ = [im for im in both if a.at[im, "label"] != b.at[im, "label"]]
    merged = pd.concat([a, b.loc[b.index.difference(a.index)]])
    merged.loc[differ, ["label", "LabelID"]] = [UNSURE, ""]
    disagreements = pd.DataFrame({"Image": differ, "first": [a.at[i, "label"] for i in differ],
                                  "second": [b.at[i, "label"] for i in differ]})
    return merged.reset_index()[[*COLUMNS, *[c for c in merged.columns if c not in COLUMNS]]], disagreements


app = typer.Typer(add_completion=False, help="A lab's labels files (downloaded from the lab report).")


@app.command("merge")
@user_errors
def merge_command(
    first: Annotated[Path, typer.Argument(help="One labeller's labels.csv.")],
    second: Annotated[Path, typer.Argument(help="The other labeller's labels.csv (same split).")],
    out: Annotated[Path, typer.Option(help="The merged file to write.")] = Path("labels.csv"),
):
    """Merge two labellers' files: agreed and single labels are kept, disagreements become unsure and are listed."""
    from rich.console import Console

    from submission.data.files import write_csv

    frames = [_read_frame(Path(p)) for p in (first, second)]
    for p, f in zip((first, second), frames):
        _label_ids(f, Path(p))
    merged, differ = merge(*frames)
    write_csv(out, merged)
    console = Console()
    for r in differ.itertuples():
        console.print(f"  {r.Image}: {first.name} says {r.first}, {second.name} says {r.second}")
    console.print(f"wrote {out}: {len(merged)} cells, {len(differ)} disagreements (marked {UNSURE}, not used)")


@app.callback()
def _group():
    """A lab's labels files."""


if __name__ == "__main__":
    app()
