"""train.py's help tells the truth (panels, the kit's defaults, switches without a value) and a newcomer's
first mistakes get one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from submission.cli import PANELS, _fmt, shown_default
from submission.config import FIELDS
from submission.recipes import DEMO, RECIPES

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_one_panel_and_the_help_shows_the_panels():
    names = [n for names in PANELS.values() for n in names]
    assert sorted(names) == sorted(FIELDS) and len(set(names)) == len(names)
    import train

    out = CliRunner().invoke(train.app, ["--help"], env={"COLUMNS": "200"}).output
    for panel in PANELS:
        assert f"─ {panel} ─" in out, panel
    assert "mcc" in next(line for line in out.splitlines() if "│ --recipe" in line)
    demo_line = next(line for line in out.splitlines() if "--demo " in line)
    assert "<bool>" not in demo_line and "<bool>" not in next(line for line in out.splitlines() if "--target-in-batch" in line)


def test_the_defaults_the_help_states_are_what_a_run_records(demo, tmp_path):
    """train.py --demo --epochs 1 --iters-per-epoch 1: config.json holds every default the help states
    (apart from what --demo sets and the options given)."""
    import train

    given = {"data_root", "runs", "cache_dir", "epochs", "iters_per_epoch", "device", "workers", "image_size"}
    args = ["--demo", "--epochs", "1", "--iters-per-epoch", "1", "--data-root", str(demo / "data"), "--runs",
            str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--workers", "0", "--image-size", "32"]
    result = CliRunner().invoke(train.app, args)
    assert result.exit_code == 0, result.output
    recorded = json.loads((tmp_path / "seed0" / "config.json").read_text())
    checked = 0
    for name in FIELDS:
        shown = shown_default(name)
        if shown is None or name in DEMO or name in given:
            continue
        assert shown.split(";")[0] == _fmt(recorded[name] if name != "lr_steps" else tuple(recorded[name])), name
        checked += 1
    assert checked > 40
    assert recorded["select"] == "source-val" and shown_default("select").startswith("source-val")


def test_train_with_no_data_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--seed", "0"], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1 and "--demo" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and list(tmp_path.iterdir()) == []


def test_checking_a_missing_submission_says_the_file_is_missing(tmp_path):
    import ensemble

    result = CliRunner().invoke(ensemble.app, ["--check", str(tmp_path / "submission.csv"), "--runs", str(tmp_path)])
    assert result.exit_code == 1 and f"no file {tmp_path / 'submission.csv'}" in result.output


def _options(app) -> dict:
    """Every long option of a typer app's command: name -> the click parameter."""
    import typer.main

    command = typer.main.get_command(app)
    return {opt: p for p in command.params for opt in p.opts if opt.startswith("--")}


def test_a_flag_means_the_same_in_every_command():
    """An option that two commands share takes the same kind of value in both (--adapt names treatments in all
    three; train.py's --crop-px is per dataset, infer.py's folder crop is --images-crop-px; train.py's --batch-size
    is per domain and step, infer.py's is --infer-batch-size)."""
    import ensemble
    import infer
    import train

    commands = {"train.py": _options(train.app), "infer.py": _options(infer.app), "ensemble.py": _options(ensemble.app)}
    assert {"--adapt", "--crop-px", "--batch-size"} <= set(commands["train.py"])
    assert {"--adapt", "--refit", "--images-crop-px", "--infer-batch-size"} <= set(commands["infer.py"])
    assert "--adapt" in commands["ensemble.py"]
    assert not {"--crop-px", "--batch-size"} & set(commands["infer.py"])
    def kind(p) -> str:  # a switch, a number or a text (a path is a text)
        return "switch" if p.is_flag else "number" if p.bare_type() in ("int", "float") else "text"

    seen = {}
    for name, options in commands.items():
        for opt, p in options.items():
            if opt in seen:
                assert kind(p) == seen[opt][1], f"{opt}: {seen[opt][0]} and {name} take different values"
            seen.setdefault(opt, (name, kind(p)))
    assert len([o for o in seen if o in commands["train.py"] and o in commands["infer.py"]]) >= 3


def test_a_list_of_recipes_names_every_recipe():
    """Wherever the commands, the package or the docs list recipes as choices (`kit|adabn|...`), every recipe is
    there; train.py --help's --recipe names each one."""
    import re

    import train

    names = "|".join(re.escape(n) for n in sorted(RECIPES, key=len, reverse=True))
    listing = re.compile(rf"(?<![\w-])(?:{names})(?:\|(?:{names})){{2,}}(?![\w-])")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "submission").rglob("*.py"),
             *(ROOT / n for n in ("train.py", "infer.py", "ensemble.py"))]
    short = [(f.name, m.group(0)) for f in files for m in listing.finditer(f.read_text())
             if set(m.group(0).split("|")) != set(RECIPES)]
    assert not short, f"recipe lists missing some: {short}"
    out = CliRunner().invoke(train.app, ["--help"], env={"COLUMNS": "400"}).output
    recipe_help = " ".join(line for line in out.splitlines() if "--recipe" in line or line.startswith("│      "))
    assert all(name in out for name in RECIPES) and all(name in recipe_help for name in RECIPES)
