"""The built Bento carries the service and what it imports, nothing else of the project.

The Bento is the session's one build (``reliability_helpers.built_bento``: ``flightdelay.ops
.release`` on the sampled pipeline run, as ``make bento`` builds it).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from reliability_helpers import built_bento

from conftest import ROOT

SHIPPED = ("contract", "serving")  # the layers the import contracts allow the service to reach


def _bento_dir(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "bentos" / name / version


def test_bento_holds_only_the_modules_serving_imports(
    request: pytest.FixtureRequest, small_repo: Path
) -> None:
    tag, home = built_bento(request, small_repo)
    src = _bento_dir(home, tag) / "src"
    shipped = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    package = ROOT / "src"
    expected = {"flightdelay/__init__.py"} | {
        p.relative_to(package).as_posix()
        for layer in SHIPPED
        for p in (package / "flightdelay" / layer).glob("*.py")
    }
    assert shipped == expected
    assert not {p.split("/")[1] for p in shipped if p.count("/") > 1} - set(SHIPPED)


def test_bento_pins_no_training_stack(request: pytest.FixtureRequest, small_repo: Path) -> None:
    """The service runs the compiled model: scikit-learn, pandas, MLflow or DVC in the image would
    only make it larger."""
    tag, home = built_bento(request, small_repo)
    bento = yaml.safe_load((_bento_dir(home, tag) / "bento.yaml").read_text())
    assert bento["service"] == "flightdelay.serving.service:FlightDelay"
    requirements = (_bento_dir(home, tag) / "env" / "python" / "requirements.txt").read_text()
    names = {
        line.split("==")[0].strip().lower() for line in requirements.splitlines() if "==" in line
    }
    assert {"bentoml", "numpy", "onnxruntime", "pydantic"} <= names
    assert not names & {"scikit-learn", "scipy", "pandas", "pyarrow", "mlflow", "dvc", "matplotlib"}
