"""Every command the README and docs/ show runs: `--help` of each entry point, and every flag they
write after it exists in that command's help."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# an entry point, with its subcommand when it has them (python -m studies.bank_study screen ...)
ENTRY = re.compile(r"(?:^|[\s`(])python (train\.py|infer\.py|ensemble\.py|-m (?:submission|studies)(?:\.[a-z_]+)+"
                   r"(?: (?:screen|freeze|confirm|run|choices|report|merge|errors)\b)?)((?: [^`|;&\n]*)?)")


def documented() -> dict[str, set[str]]:
    """entry point -> the flags the docs give it (from code blocks and inline code)."""
    out: dict[str, set[str]] = {}
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            for entry, rest in ENTRY.findall(line):
                out.setdefault(entry, set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest))
    return out


COMMANDS = documented()


def test_the_docs_show_every_entry_point():
    assert {"train.py", "infer.py", "ensemble.py", "-m submission.demo", "-m studies.study",
            "-m submission.data.importer", "-m submission.data.splits", "-m studies.bench"} <= set(COMMANDS)


def _command(entry: str):
    """(the typer app behind a documented entry point, its subcommand args), or None when the module has no app of
    its own (a package run by its __main__.py): such an entry is run as a process."""
    import importlib

    parts = entry.split()
    name = parts[0].removesuffix(".py") if parts[0].endswith(".py") else parts[1]
    module = importlib.import_module(name)
    path = Path(module.__file__)
    if path.name == "__init__.py":  # python -m PACKAGE runs PACKAGE/__main__.py
        assert (path.parent / "__main__.py").is_file(), entry
        return None
    assert 'if __name__ == "__main__":' in path.read_text(), f"python {entry} would not run its command"
    return module.app, parts[1:] if parts[0].endswith(".py") else parts[2:]


@pytest.mark.parametrize("entry", sorted(COMMANDS))
def test_a_documented_command_has_help_and_its_flags(entry):
    """In this process where the module holds its app (no interpreter and torch start per command)."""
    from typer.testing import CliRunner

    found = _command(entry)
    if found is None:
        env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
        done = subprocess.run([sys.executable, *entry.split(), "--help"], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=120)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        app, args = found
        result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
        code, out, err = result.exit_code, result.output, repr(result.exception)
    assert code == 0 and "Usage" in out, err[-2000:]
    missing = sorted(f for f in COMMANDS[entry] if f not in out and f != "--help")
    assert not missing, f"python {entry}: the docs use {missing}, its --help has no such option"


def test_the_readmes_demo_numbers_are_the_committed_run_record():
    """The README's demo scores (every treatment's, the check, the choice, the taught run) and time are those of
    docs/results/demo/demo_record.json (demo.sh's)."""
    import json

    rec = json.loads((ROOT / "docs/results/demo/demo_record.json").read_text())
    text = " ".join((ROOT / "README.md").read_text().split())
    assert f"{rec['seconds']['total']} s after installation" in text and rec["machine"]["cpu"] in text
    for name, t in rec["treatments"].items():
        seeds = " / ".join(f"{v:.3f}" for v in t["seeds"].values())
        assert f"| {name} " in text and f"| {seeds} | **{t['ensemble']:.3f}** |" in text, name
    lab = rec["labels"]
    assert f"chose **{lab['chosen']}**" in text and f"{lab['check']['macro_f1']:.3f}" in text
    assert f"submission.csv under it: **{rec['submission']['macro_f1']:.3f}**" in text
    taught = rec["taught"]["seed0"]
    assert f"{rec['treatments'][rec['default']]['seeds']['seed0']:.3f} -> **{taught['macro_f1']:.3f}**" in text


MEASURED_NUMBER = re.compile(r"(?<!Python )(?<![\w.])[+-]?\d?\.\d{2,3}(?![\w.])|\b\d+(\.\d+)?%|\b\d+ s\b|\b\d+(\.\d+)?x\b")


def _paragraphs(text: str) -> list[str]:
    """The README's prose paragraphs and list items (code blocks and tables left out)."""
    blocks, current, code = [], [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            code = not code
            continue
        if code or line.startswith("|"):
            continue
        if not line.strip() or line.startswith(("- ", "#")):
            blocks.append(" ".join(current))
            current = [line] if line.strip() else []
            continue
        current.append(line)
    return [b for b in blocks + [" ".join(current)] if b]


def test_every_measured_number_in_the_readme_links_its_table_or_record():
    """A paragraph (or list item) of the README that gives a score, a share, a time or a ratio links, beside it,
    the committed table or run record it comes from (under docs/ or submission/measured/)."""
    bare = [p[:120] for p in _paragraphs((ROOT / "README.md").read_text())
            if MEASURED_NUMBER.search(p) and not re.search(r"\]\((docs/|submission/measured/)", p)]
    assert not bare, f"numbers without their table: {bare}"


def test_the_readme_link_check_sees_a_bare_number():
    assert len(_paragraphs("text\n\n- a gain of +0.255 on labs\n- linked 0.25 ([t](docs/t.md))\n\n```\n0.5\n```")) == 3
    assert MEASURED_NUMBER.search("a gain of +0.255") and MEASURED_NUMBER.search("took 370 s")
    assert not MEASURED_NUMBER.search("Python 3.11 and 25 um at 11.2 px/um")


def test_the_package_installs_and_its_module_commands_work_from_any_folder(tmp_path):
    """pyproject.toml names the package, its version and its data files; installed (`pip install -e .`, as test.sh
    and demo.sh do), `python -m submission...` works outside the repository, and finds the measured records."""
    import importlib.metadata
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "wbc-da" and meta["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == [
        "requirements.txt"]
    try:
        importlib.metadata.distribution("wbc-da")
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the kit is not installed in this environment (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for module in ("submission.data.importer", "submission.data.splits", "submission.demo", "submission.data.labels"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0 and "Usage" in done.stdout, (module, done.stderr[-1000:])
    code = "from submission.scoring.trust import MEASURED; print(MEASURED.is_file())"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "True", done.stderr[-1000:]
