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
MODEL_FILE = "models/model.joblib"
PICKLED = "flightdelay.model.candidates"  # home of FlightFeatures, the fitted Pipeline's first step


def imported_modules(source: Path) -> set[str]:
    """Dotted names of the package's modules that ``source`` imports, at top level or inside
    functions; ``from flightdelay.x import y`` names ``flightdelay.x.y`` too, in case y is one."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            found.add(str(node.module))
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
    return found


def module_file(src: Path, name: str) -> Path | None:
    """The file of a dotted module name under ``src`` (None for a name that is no module)."""
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_closure(src: Path, module: str) -> set[str]:
    """The files of ``module`` and every package module it reaches through imports, relative to
    the repository root; empty ``__init__.py`` files (no code to change) are left out."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = module_file(src, todo.pop())
        if path is not None and path not in seen:
            seen.add(path)
            todo.extend(imported_modules(path))
    root = src.parent
    return {p.relative_to(root).as_posix() for p in seen if p.read_text(encoding="utf-8").strip()}


def dep_problems(root: Path) -> dict[str, dict[str, list[str]]]:
    """Stage -> package modules its ``python -m flightdelay...`` reaches but its deps do not list
    (``missing``), and package modules it lists but does not reach (``extra``)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    found = {}
    for name, stage in stages.items():
        module = stage["cmd"].split("-m ")[1].split()[0]
        reached = import_closure(root / "src", module)
        if MODEL_FILE in stage["deps"]:  # unpickling the Pipeline imports the classes it holds
            reached |= import_closure(root / "src", PICKLED)
        listed = {d for d in stage["deps"] if d.startswith(f"src/{PACKAGE}/")}
        found[name] = {"missing": sorted(reached - listed), "extra": sorted(listed - reached)}
    return found


def test_every_stage_lists_exactly_the_modules_it_imports() -> None:
    found = dep_problems(ROOT)
    assert set(found) == {"ingest", "features", "train", "evaluate", "benchmark"}
    clean = {"missing": [], "extra": []}
    assert found == dict.fromkeys(found, clean), "fix these deps of the stages in dvc.yaml"


def test_training_and_evaluation_do_not_depend_on_the_compiler_or_serving() -> None:
    """An edit of the ONNX compiler or the serving runtime re-runs the benchmark, not training."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name in ("train", "evaluate"):
        layers = {d.split("/")[2] for d in stages[name]["deps"] if d.startswith("src/")}
        assert not layers & {"compile", "serving", "ops"}, name


@pytest.mark.parametrize(
    "how",
    [
        "from flightdelay.sub.c import x",
        "from flightdelay.sub import c",
        "import flightdelay.sub.c",
    ],
)
def test_a_module_reached_through_another_is_reported(tmp_path: Path, how: str) -> None:
    package = tmp_path / "src" / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (package / "a.py").write_text("from flightdelay.b import y\n", encoding="utf-8")
    (package / "b.py").write_text(f"def y():\n    {how}\n", encoding="utf-8")
    (package / "sub" / "c.py").write_text("x = 1\n", encoding="utf-8")
    (package / "d.py").write_text("x = 2\n", encoding="utf-8")
    deps = ["src/flightdelay/a.py", "src/flightdelay/d.py"]
    stage = {"cmd": "python -m flightdelay.a --out o", "deps": deps}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"a": stage}}), encoding="utf-8")
    assert dep_problems(tmp_path) == {
        "a": {
            "missing": ["src/flightdelay/b.py", "src/flightdelay/sub/c.py"],
            "extra": ["src/flightdelay/d.py"],
        }
    }
