"""The built Bento carries the service and what it imports, nothing else of the project.

The Bento is the session's one build (``reliability_helpers.built_bento``: ``flightdelay.ops
.release`` on the sampled pipeline run, as ``make bento`` builds it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from reliability_helpers import built_bento

from conftest import ROOT, run

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


def test_the_bento_carries_its_sbom_and_the_audit_reads_it(
    request: pytest.FixtureRequest, small_repo: Path, tmp_path: Path
) -> None:
    """release writes a CycloneDX SBOM of the Bento's pinned packages into its folder;
    scripts/audit.py --sbom audits exactly those (or says it could not reach the service)."""
    tag, home = built_bento(request, small_repo)
    bento = _bento_dir(home, tag)
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    pinned = {
        line.split(";")[0].strip().lower() for line in requirements.splitlines() if "==" in line
    }
    sbom = json.loads((bento / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["metadata"]["component"]["name"] == "flight-delay"
    listed = {f"{c['name']}=={c['version']}".lower() for c in sbom["components"]}
    assert listed == pinned
    assert all(c["purl"].startswith("pkg:pypi/") for c in sbom["components"])
    out = tmp_path / "audit.json"
    cmd = [sys.executable, str(ROOT / "scripts/audit.py"), "--sbom", str(bento / "sbom.cdx.json")]
    done = run([*cmd, "--out", str(out)], ROOT, False)
    assert f"audit: {len(pinned)} packages of {bento / 'sbom.cdx.json'}" in done.stderr
    summary = json.loads(out.read_text())
    if summary["status"] == "unreachable":
        assert "SKIPPED, the pypi vulnerability service is unreachable" in done.stderr
        assert done.returncode == 0  # an offline machine says so, and does not fail
    else:
        assert summary["audited"] == len(pinned), done.stderr
        assert summary["vulnerable"] == {}, done.stderr
