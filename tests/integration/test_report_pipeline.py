"""``flightdelay report`` on this project: a branch that changes a train param, reported against
main, shows exactly the numbers of ``dvc metrics diff`` and ``dvc params diff``, intervals of the
test metrics' changes from both revisions' cached predictions (or the base recomputed), and the
plots of ``dvc plots diff`` drawn from DVC's templates."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import vl_convert
import yaml

from conftest import run, script
from flightdelay.ops import plots

scan_secrets = script("scan_secrets")
NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
TESTED = ("roc_auc", "pr_auc", "brier", "log_loss")


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
    """A copy of the sampled run committed on main, and a branch 'lr' with a new learning rate and
    a new regularisation of the logistic regression (the winner: so the test metrics move)."""
    repo = tmp_path_factory.mktemp("report-branch") / "repo"
    shutil.copytree(small_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "pipeline run"], repo)
    run(["git", "checkout", "-qb", "lr"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["candidates"]["hgb"]["learning_rate"] = 0.2
    params["train"]["candidates"]["logreg"]["C"] = 0.1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "hgb learning rate 0.2, logreg C 0.1"], repo)
    run(["flightdelay", "report", "--base", "main", "--out", "report.md"], repo)
    return repo


def _interval(cell: str) -> tuple[float, float]:
    low, high = (float(x) for x in NUMBER.findall(cell))
    return low, high


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
            base, head, change = rows[label][:3]  # test metrics: then interval and verdict
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
            },
            "train.candidates.logreg.C": {"old": 1.0, "new": 0.1, "diff": pytest.approx(-0.9)},
        }
    }
    assert _cells(text)["`train.candidates.hgb.learning_rate`"] == ["0.05", "0.2"]
    assert _cells(text)["`train.candidates.logreg.C`"] == ["1", "0.1"]
    assert "| head | ✅ pass | all gates met |" in text
    pngs = sorted(p.name for p in (branch / "report_assets").iterdir())
    assert pngs == ["calibration.png", "confusion.png", "importance.png", "pr.png", "roc.png"]
    assert "head only" not in text  # the base's plots came from the DVC cache
    assert len(text) < 60_000


@pytest.mark.integration
def test_report_plots_are_dvcs_templates_rendered(branch: Path) -> None:
    """Each PNG is vl-convert's rendering of the spec ``dvc plots diff`` fills from the template
    dvc.yaml declares: base and head in one chart, as DVC draws them."""
    diff = json.loads(run(["dvc", "plots", "diff", "main", "--json"], branch).stdout)
    found = plots.specs(diff)
    assert [p.name for p in found] == ["calibration", "confusion", "importance", "pr", "roc"]
    for plot in found:
        assert plot.revisions == ("workspace", "main"), plot.name
        assert (branch / "report_assets" / f"{plot.name}.png").read_bytes() == plots.png(plot)
    roc = next(p for p in found if p.name == "roc")
    assert roc.spec["mark"]["type"] == "line"  # template `simple` in dvc.yaml
    assert plots.vegalite_version(roc.spec) in vl_convert.get_vegalite_versions()


@pytest.mark.integration
def test_report_intervals_of_the_test_metrics(branch: Path) -> None:
    """Every test metric's change has an interval from the cached predictions of both revisions,
    and the verdict and the headline follow from it."""
    text = (branch / "report.md").read_text()
    top = text.split("### ", 1)[0]
    assert "**Gates:** ✅ pass (head) · ✅ pass (base)" in top
    assert "**Better?** " in top
    assert "95 % paired-bootstrap intervals of head − base: 1,000 resamples (seed 2013)" in top
    assert "the base's predictions were read from the local DVC cache." in top
    rows = _cells(text)
    for name in TESTED:
        base, head, change, interval, verdict = rows[f"`test.{name}`"]
        low, high = _interval(interval)
        assert _number(change) != 0, f"{name} did not move: its interval would prove nothing"
        assert low < high, name
        if low <= 0 <= high:
            assert verdict == "within noise", name
        else:
            assert verdict.endswith("beyond noise"), name
        assert f"[{low:+.4f}, {high:+.4f}]" in top, name  # the headline quotes each interval
    assert "<details><summary>Unchanged metrics (" in text


@pytest.mark.integration
def test_report_recomputes_the_base_when_no_cache_holds_its_predictions(
    branch: Path, tmp_path: Path
) -> None:
    """Without the base's predictions in the DVC cache, and with the remote out of reach (as for a
    fork's pull request in CI), the base is reproduced in a temporary worktree from its own code:
    the same intervals come out."""
    repo = tmp_path / "repo"
    shutil.copytree(branch, repo, symlinks=True)
    lock = yaml.safe_load(run(["git", "show", "main:dvc.lock"], repo).stdout)
    (out,) = (o for o in lock["stages"]["evaluate"]["outs"] if o["path"].endswith(".parquet"))
    (repo / ".dvc/cache/files/md5" / out["md5"][:2] / out["md5"][2:]).unlink()
    run(["flightdelay", "report", "--base", "main", "--out", "again.md"], repo)
    again, cached = ((d / n).read_text() for d, n in ((repo, "again.md"), (branch, "report.md")))
    assert "the base's predictions were recomputed (`dvc repro evaluate` of the base)." in again
    rows = _cells(again)
    for name in TESTED:
        assert rows[f"`test.{name}`"] == _cells(cached)[f"`test.{name}`"], name
    assert len(run(["git", "worktree", "list"], repo).stdout.splitlines()) == 1


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
