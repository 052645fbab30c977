"""``flightdelay report`` on this project: a branch that changes a train param, reported against
main, shows exactly the numbers of ``dvc metrics diff`` and ``dvc params diff``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run, script

scan_secrets = script("scan_secrets")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def _cells(text: str) -> dict[str, list[str]]:
    """Table rows of the report by their first cell (the metric or param, in backticks)."""
    return {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| `")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }


def _number(cell: str) -> float:
    if cell == "= 0":
        return 0.0
    found = NUMBER.search(cell)
    assert found, cell
    return float(found.group())


@pytest.fixture(scope="module")
def branch(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sampled run committed on main, and a branch 'lr' with a new learning rate."""
    repo = tmp_path_factory.mktemp("report-branch") / "repo"
    shutil.copytree(small_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline run"], repo)
    run(["git", "checkout", "-qb", "lr"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["candidates"]["hgb"]["learning_rate"] = 0.2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "hgb learning rate 0.2"], repo)
    run(["flightdelay", "report", "--base", "main", "--out", "report.md"], repo)
    return repo


@pytest.mark.integration
def test_report_numbers_equal_dvc_metrics_diff(branch: Path) -> None:
    rows = _cells((branch / "report.md").read_text())
    diff = json.loads(run(["dvc", "metrics", "diff", "main", "--all", "--json"], branch).stdout)
    changed = 0
    for path, entries in diff.items():
        for key, entry in entries.items():
            if not isinstance(entry["new"], int | float):
                continue  # e.g. the winner's name
            label = f"`{Path(path).stem}` `{key}`" if "benchmark" in path else f"`{key}`"
            base, head, change = rows[label]
            assert _number(base) == pytest.approx(entry["old"], abs=1e-6), label
            assert _number(head) == pytest.approx(entry["new"], abs=1e-6), label
            assert _number(change) == pytest.approx(entry.get("diff", 0.0), abs=1e-6), label
            changed += entry.get("diff", 0.0) != 0
    assert changed, "the learning rate changed no metric: the test would prove nothing"


@pytest.mark.integration
def test_report_params_and_plots(branch: Path) -> None:
    text = (branch / "report.md").read_text()
    params = json.loads(run(["dvc", "params", "diff", "main", "--json"], branch).stdout)
    assert params == {
        "params.yaml": {
            "train.candidates.hgb.learning_rate": {
                "old": 0.05,
                "new": 0.2,
                "diff": pytest.approx(0.15),
            }
        }
    }
    assert _cells(text)["`train.candidates.hgb.learning_rate`"] == ["0.05", "0.2"]
    assert "| head | ✅ pass | all gates met |" in text
    pngs = sorted(p.name for p in (branch / "report_assets").iterdir())
    assert pngs == ["calibration.png", "confusion.png", "importance.png", "pr.png", "roc.png"]
    assert "head only" not in text  # the base's plots came from the DVC cache
    assert len(text) < 60_000


def test_generated_report_and_its_logs_hold_no_credentials(
    small_repo: Path, tmp_path: Path
) -> None:
    """`flightdelay report` on a copy of the sampled pipeline run: report.md, and the command's
    output, carry numbers and params only."""
    repo = tmp_path / "repo"
    shutil.copytree(small_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline run"], repo)
    done = run(["flightdelay", "report", "--base", "main"], repo)
    (tmp_path / "report.log").write_text(done.stdout + done.stderr)
    report = repo / "report.md"
    assert "flight-delay report" in report.read_text()
    findings = scan_secrets.scan_paths([report, tmp_path / "report.log"])
    assert not findings, "\n".join(map(str, findings))
