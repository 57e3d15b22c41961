"""Logits files, the ensemble of runs, and the challenge's submission CSV (Image,Label,LabelID)."""

from pathlib import Path

import numpy as np
import pandas as pd

from submission.data.classes import CLASS_TO_ID, CLASSES
from submission.data.files import write_csv
from submission.data.splits import image_sort_key, sort_images
from submission.errors import KitError

SUBMISSION_COLUMNS = ["Image", "Label", "LabelID"]


def logits_frame(images: list[str], logits: np.ndarray, classes=CLASSES) -> pd.DataFrame:
    """Column Image, then one column of logits per class name."""
    frame = pd.DataFrame(np.asarray(logits, dtype=np.float64), columns=list(classes))
    frame.insert(0, "Image", list(images))
    return frame


def read_logits(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"no logits file {path}: run `python infer.py` first")
    frame = pd.read_csv(path, dtype={"Image": str})
    if not len(frame.columns) or frame.columns[0] != "Image":
        raise KitError(f"{path}: the first column must be Image")
    if frame["Image"].duplicated().any():
        dup = frame.loc[frame["Image"].duplicated(), "Image"].iloc[0]
        raise KitError(f"{path}: image {dup} appears more than once")
    return frame


def ensemble_logits(frames: list[pd.DataFrame], names: list[str] | None = None) -> pd.DataFrame:
    """Mean of the runs' logits, image by image (joined on Image, never on row order)."""
    if not frames:
        raise KitError("no runs to ensemble")
    names = names or [f"run {i}" for i in range(len(frames))]
    classes = list(frames[0].columns[1:])
    for name, f in zip(names, frames):
        if list(f.columns[1:]) != classes:
            raise KitError(f"{name} has the classes {list(f.columns[1:])}, {names[0]} has {classes}: runs must share one class list")
    images = set(frames[0]["Image"])
    for name, f in zip(names, frames):
        if set(f["Image"]) != images:
            only = sorted(images ^ set(f["Image"]))[:3]
            raise KitError(f"{name} and {names[0]} predicted different images (e.g. {', '.join(only)})")
    order = sort_images(images)
    stacked = np.stack([f.set_index("Image").loc[order, classes].to_numpy(np.float64) for f in frames])  # (R, N, K)
    return logits_frame(order, stacked.mean(0), classes)


def predictions_frame(logits: pd.DataFrame, min_confidence: float = 0.5) -> pd.DataFrame:
    """A lab's predictions file: Image (path relative to the folder), Label, LabelID, one probability
    per class (p_<class>), the prediction's entropy (nats), and `uncertain` (top probability below
    `min_confidence`): the images a person should look at first."""
    from submission.scoring.validators import softmax

    classes = list(logits.columns[1:])
    frame = logits.assign(_key=logits["Image"].map(image_sort_key)).sort_values("_key")
    p = softmax(frame[classes].to_numpy())
    pred = p.argmax(1)
    out = pd.DataFrame({"Image": frame["Image"].to_numpy(), "Label": [classes[i] for i in pred], "LabelID": pred})
    for i, c in enumerate(classes):
        out[f"p_{c}"] = p[:, i]
    out["entropy"] = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    out["uncertain"] = p.max(1) < min_confidence
    return out


def submission_frame(logits: pd.DataFrame) -> pd.DataFrame:
    classes = list(logits.columns[1:])
    if classes != list(CLASSES):
        raise KitError(f"logits have the classes {classes}, the challenge has {list(CLASSES)}")
    frame = logits.assign(_key=logits["Image"].map(image_sort_key)).sort_values("_key")
    pred = frame[classes].to_numpy().argmax(1)
    return pd.DataFrame({"Image": frame["Image"].to_numpy(), "Label": [CLASSES[i] for i in pred], "LabelID": pred})


def check_submission(sub: pd.DataFrame, expected_images) -> list[str]:
    """Every problem that would make the file a wrong upload; an empty list means valid."""
    problems = []
    if list(sub.columns) != SUBMISSION_COLUMNS:
        return [f"header is {','.join(map(str, sub.columns))}, expected {','.join(SUBMISSION_COLUMNS)}"]
    images = sub["Image"].astype(str)
    dup = images[images.duplicated()]
    if len(dup):
        problems.append(f"{len(dup)} duplicate rows (e.g. {dup.iloc[0]})")
    expected = set(expected_images)
    missing, extra = sorted(expected - set(images), key=image_sort_key), sorted(set(images) - expected)
    if missing:
        problems.append(f"{len(missing)} images of the split are missing (e.g. {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} rows name images not in the split (e.g. {', '.join(extra[:3])})")
    # LabelID must be the class's id written as a plain integer ("8", not "8.0" or " 8")
    bad = [i for i, (label, lid) in enumerate(zip(sub["Label"].astype(str), sub["LabelID"].astype(str)))
           if label not in CLASS_TO_ID or lid != str(CLASS_TO_ID[label])]
    if bad:
        r = sub.iloc[bad[0]]
        problems.append(f"{len(bad)} rows whose Label and LabelID disagree with the class table (e.g. {r['Image']},{r['Label']},{r['LabelID']})")
    if not problems and list(images) != sort_images(images):
        problems.append("rows are not in the numeric order of the file names")
    return problems


def write_submission(path: Path, sub: pd.DataFrame, expected_images) -> None:
    """Check, then write atomically; a submission that fails a check is never written."""
    problems = check_submission(sub, expected_images)
    if problems:
        raise KitError(f"submission not written ({path}): " + "; ".join(problems))
    write_csv(path, sub)


def read_submission(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise KitError(f"no file {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise KitError(f"{path} is not a readable CSV ({str(e).splitlines()[0]})") from None


def read_labels(path: Path, split: str) -> pd.Series:
    """Known labels (Image -> label id) from a CSV with Image and Label or LabelID; a folder means FOLDER/<split>.csv.

    Read only to report scores, never for training or checkpoint choice.
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{split}.csv"
    if not path.is_file():
        raise KitError(f"no labels file {path}")
    frame = pd.read_csv(path, dtype={"Image": str, "Label": str})
    if "LabelID" in frame:
        ids = frame["LabelID"].astype(int)
    elif "Label" in frame:
        unknown = set(frame["Label"]) - set(CLASS_TO_ID)
        if unknown:
            raise KitError(f"{path}: unknown labels {sorted(unknown)[:3]}")
        ids = frame["Label"].map(CLASS_TO_ID)
    else:
        raise KitError(f"{path}: needs the columns Image and Label or LabelID")
    return pd.Series(ids.to_numpy(), index=frame["Image"].to_numpy())


# The source-validation logits a run's label-free estimate is calibrated on, written by infer.py beside its target
# logits (`source_val_...csv`: Image, label, one logit column per class).
def source_val_name(logits_csv: str) -> str:
    return "source_val_" + Path(logits_csv).name.removeprefix("logits_")


def write_source_val(dest: Path, val, classes: list[str]) -> None:
    frame = pd.DataFrame(val.logits, columns=classes)
    frame.insert(0, "label", val.labels)
    frame.insert(0, "Image", val.images)
    write_csv(dest, frame)


def read_source_val(path: Path, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_csv(path, dtype={"Image": str})
    return frame.set_index("Image")[classes], frame["label"].to_numpy()
