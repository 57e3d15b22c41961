"""The package's shape: wings by job whose imports run one way, small modules, short functions."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "submission"
# Imports run downward in this order: a module may import its own wing and the wings before it. The settings
# (config.py, cli.py) stand on methods/, whose adaptation terms declare their own settings; the demo (its data
# and its run record) stands on all of them. The studies (top-level studies/) import the package and are never
# imported by it.
WINGS = ("ground", "methods", "settings", "data", "scoring", "train", "predict", "demo")
SETTINGS = ("config", "cli", "recipes")
MODULES = sorted(PACKAGE.rglob("*.py"))
SCRIPTS = [ROOT / n for n in ("train.py", "infer.py", "ensemble.py")]
STUDIES = sorted((ROOT / "studies").glob("*.py"))


def wing(module: str) -> str:
    parts = module.split(".")[1:]
    if len(parts) > 1 or (parts and (PACKAGE / parts[0]).is_dir()):
        return parts[0]
    return "settings" if parts and parts[0] in SETTINGS else "ground"


def name_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imported(path: Path) -> set[str]:
    """Every submission module `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("submission"):
            assert node.level == 0, f"{path}: relative import"
            for a in node.names:  # `from submission.data import classes` names a module
                full = f"{node.module}.{a.name}"
                out.add(full if (ROOT / (full.replace(".", "/") + ".py")).is_file() else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("submission")}
    return out - {"submission"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path):
    me = WINGS.index(wing(name_of(path)))
    upward = [m for m in imported(path) if WINGS.index(wing(m)) > me]
    assert not upward, f"{name_of(path)} ({WINGS[me]}) imports upward: {upward}"


@pytest.mark.parametrize("path", MODULES + SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_product_never_imports_the_studies(path):
    names = {a.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in names if m == "studies" or m.startswith("studies.")], path


def test_the_studies_stand_apart_and_use_the_package():
    assert not (PACKAGE / "studies").exists() and len(STUDIES) > 5
    assert all(imported(p) for p in STUDIES if p.name != "__init__.py" and "protocol" not in p.name)


def test_no_import_circle():
    graph = {name_of(p): imported(p) - {name_of(p)} for p in MODULES}
    state = {}

    def visit(m, trail):
        if state.get(m) == "open":
            raise AssertionError("import circle: " + " -> ".join(trail + [m]))
        if state.get(m) != "done":
            state[m] = "open"
            for n in graph.get(m, ()):
                visit(n, trail + [m])
            state[m] = "done"

    for m in graph:
        visit(m, [])


@pytest.mark.parametrize("path", MODULES + SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small_and_functions_short(path):
    text = path.read_text()
    assert len(text.splitlines()) <= 300, f"{path.name}: {len(text.splitlines())} lines"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, f"{path.name}: functions over 60 lines: {long}"


def test_every_wing_has_a_docstring_saying_what_lives_there():
    for init in PACKAGE.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), init
