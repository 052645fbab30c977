"""dvc.yaml: every stage lists, among its deps, each flightdelay module its code can import.

A module missing from a stage's deps is a module whose edit leaves the stage "unchanged" in
``dvc status``, so ``dvc repro`` would keep outputs the edited code no longer produces.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGE = "flightdelay"


def imported_modules(source: Path) -> set[str]:
    """Modules of the package that ``source`` imports anywhere (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{PACKAGE}."):
            found.add(str(node.module).split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{PACKAGE}.")}
    return found


def import_closure(src: Path, module: str) -> set[str]:
    """``module`` and every package module it reaches through imports, as paths under ``src``."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name not in seen and (src / f"{name}.py").is_file():
            seen.add(name)
            todo.extend(imported_modules(src / f"{name}.py"))
    return {f"src/{PACKAGE}/{name}.py" for name in seen}


def missing_deps(root: Path) -> dict[str, list[str]]:
    """Stage -> package modules its ``python -m flightdelay.<stage>`` reaches, missing in deps."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing = {}
    for name, stage in stages.items():
        module = stage["cmd"].split(f"-m {PACKAGE}.")[1].split()[0]
        reached = import_closure(root / "src" / PACKAGE, module)
        missing[name] = sorted(reached - set(stage["deps"]))
    return missing


def test_every_stage_lists_the_modules_it_imports() -> None:
    missing = missing_deps(ROOT)
    assert set(missing) == {"ingest", "features", "train", "evaluate", "benchmark"}
    assert missing == dict.fromkeys(missing, []), "add these to the stage's deps in dvc.yaml"


@pytest.mark.parametrize("how", ["from flightdelay.c import x", "from flightdelay import c"])
def test_a_module_reached_through_another_is_reported(tmp_path: Path, how: str) -> None:
    package = tmp_path / "src" / PACKAGE
    package.mkdir(parents=True)
    (package / "a.py").write_text("from flightdelay.b import y\n", encoding="utf-8")
    (package / "b.py").write_text(f"def y():\n    {how}\n", encoding="utf-8")
    (package / "c.py").write_text("x = 1\n", encoding="utf-8")
    stage = {"cmd": "python -m flightdelay.a --out o", "deps": ["src/flightdelay/a.py"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"a": stage}}), encoding="utf-8")
    assert missing_deps(tmp_path) == {"a": ["src/flightdelay/b.py", "src/flightdelay/c.py"]}
