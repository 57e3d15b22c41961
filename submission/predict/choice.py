"""The test-time treatment a lab's labels chose (ensemble.py --labels), recorded beside the runs
(RUNS/adapt_choice.json, one entry per lab: its data root) so that later predictions of the same lab use it
and say so; `--adapt NAME` overrides it. Imports neither torch nor OpenCV."""

import json
from pathlib import Path

from submission.data.files import write_json
from submission.errors import KitError, note
from submission.methods import adapt

CHOICE = "adapt_choice.json"
_said: set = set()


def lab_key(target) -> str:
    """What names a lab in the record: the resolved data root of its images (WBC1 and WBC2 share one)."""
    return str(Path(target.data_root).resolve())


def recorded_choice(runs_dir: Path, target) -> dict | None:
    """The choice recorded for these runs and this lab, or None."""
    path = Path(runs_dir) / CHOICE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get(lab_key(target))
    except json.JSONDecodeError as e:
        raise KitError(f"{path} is not valid JSON ({e}): remove it, or choose again with ensemble.py --labels") from None


def record_choice(runs_dir: Path, target, choice: dict) -> Path:
    """Keep `choice` (chosen, default, why, labels, candidates) for this lab beside the runs; returns the file."""
    path = Path(runs_dir) / CHOICE
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[lab_key(target)] = {**choice, "lab": lab_key(target), "split": target.name}
    write_json(path, data)
    return path


def has_batchnorm(ckpt: dict) -> bool:
    """Whether the checkpoint's backbone has BatchNorm statistics that a treatment may change (not frozen)."""
    return not ckpt["config"].get("freeze_backbone") and any(
        k.startswith("backbone.") and k.endswith("running_mean") for k in ckpt["model"])


def treatments_for(ckpt: dict, target, asked: str | None, runs_dir: Path, console=None) -> list[str]:
    """The treatments to predict under: those asked (--adapt), else the lab's recorded choice, else the run's own."""
    if asked:
        return adapt.parse(asked, has_batchnorm(ckpt))
    rec = recorded_choice(runs_dir, target)
    if rec is not None:
        key = (str(runs_dir), lab_key(target))
        if key not in _said:
            _said.add(key)
            note(f"--adapt {rec['treatment']}: chosen by {rec['labels']} of this lab's labels ({rec['why']}; recorded in "
                 f"{Path(runs_dir) / CHOICE}); --adapt NAME overrides it")
        return [rec["treatment"]]
    return [ckpt["config"]["adapt"]]
