"""The linters, the type checker and the layer contracts are part of the test suite, so one command
runs what CI runs."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"], ["lint-imports"]],
    ids=["ruff-check", "ruff-format", "mypy", "import-contracts"],
)
def test_tool_passes(cmd: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "imports", "contract"),
    [
        (
            "serving/leak.py",
            "from flightdelay.model import store",
            "Serving (what the Bento ships)",
        ),
        ("contract/leak.py", "from flightdelay.core import errors", "The contract imports no"),
        ("core/leak.py", "from flightdelay.pipeline import train", "Layers:"),
        ("pipeline/ingest.py", "from flightdelay.pipeline import evaluate", "No stage imports"),
    ],
)
def test_import_contracts_catch_an_import_across_the_layers(
    tmp_path: Path, module: str, imports: str, contract: str
) -> None:
    """A copy of the package with one forbidden import added: lint-imports names the contract."""
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / "src" / "flightdelay" / module
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(f"{before}\n{imports}\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
