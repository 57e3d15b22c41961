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
# an entry point, with its subcommand when it has them (python -m submission.studies.bank_study screen ...)
ENTRY = re.compile(r"(?:^|[\s`(])python (train\.py|infer\.py|ensemble\.py|-m submission(?:\.[a-z_]+)+"
                   r"(?: (?:screen|freeze|confirm|run|choices|report)\b)?)((?: [^`|;&\n]*)?)")


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
    assert {"train.py", "infer.py", "ensemble.py", "-m submission.demo", "-m submission.study",
            "-m submission.importer", "-m submission.splits", "-m submission.bench"} <= set(COMMANDS)


@pytest.mark.parametrize("entry", sorted(COMMANDS))
def test_a_documented_command_has_help_and_its_flags(entry):
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([sys.executable, *entry.split(), "--help"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr[-2000:]
    missing = sorted(f for f in COMMANDS[entry] if f not in done.stdout and f != "--help")
    assert not missing, f"python {entry}: the docs use {missing}, its --help has no such option"
