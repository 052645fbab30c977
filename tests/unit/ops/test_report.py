"""The pull-request report: pure formatting on tiny inputs, then the command on a real Git + DVC
repository with a base and a head commit of metrics, params and plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run
from flightdelay.core.errors import StageError
from flightdelay.core.params import Gates
from flightdelay.ops import report


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("test.roc_auc", 1),
        ("slice.origin.EWR.roc_auc", 1),
        ("valid.hgb.roc_auc", 1),
        ("test.recall", 1),
        ("bulk_rows_per_s", 1),
        ("bulk_speedup", 1),
        ("test.brier", -1),
        ("dummy.log_loss", -1),
        ("single_row_ms_p50", -1),
        ("model_size_mb", -1),
        ("peak_rss_mb", -1),
        ("server_pss_mb", -1),
        ("test.rows", 0),
        ("slice.carrier.UA.delayed_rate", 0),
        ("threshold", 0),
        ("winner", 0),
    ],
)
def test_direction(key: str, expected: int) -> None:
    assert report.direction(key) == expected


@pytest.mark.parametrize(
    ("old", "new", "sense", "expected"),
    [
        (0.7, 0.75, 1, "▲ +0.05 ✅"),
        (0.75, 0.7, 1, "▼ -0.05 ❌"),
        (0.18, 0.19, -1, "▲ +0.01 ❌"),
        (4.0, 3.0, -1, "▼ -1 ✅"),
        (1000, 1200, 0, "▲ +200"),
        (0.5, 0.5, 1, "= 0"),
        (None, 0.4, 1, "new"),
        (0.55, None, -1, "removed"),
        ("hgb", "logreg", 0, "changed"),
        ("hgb", "hgb", 0, ""),
    ],
)
def test_change(old: report.Value, new: report.Value, sense: int, expected: str) -> None:
    assert report.change(old, new, sense) == expected


def test_fmt() -> None:
    assert [report.fmt(v) for v in (None, 0.708744, 132540.9154, 0.0, -0.0, 53991, "hgb")] == [
        "—", "0.708744", "132540.9154", "0", "0", "53991", "hgb",
    ]  # fmt: skip


def _slices(n: int) -> dict[str, dict[str, dict[str, report.Value]]]:
    entries: dict[str, dict[str, report.Value]] = {
        f"slice.carrier.C{i:05d}.roc_auc": {"old": 0.6, "new": 0.61} for i in range(n)
    }
    entries["test.roc_auc"] = {"old": 0.7, "new": 0.72}
    return {"metrics/evaluate.json": entries}


def test_oversized_report_is_trimmed_largest_table_first() -> None:
    gates = Gates(min_roc_auc=0.6, max_brier=0.2, min_lift_over_dummy=0.1)
    text = report.build(_slices(5000), {}, gates, "", "title")
    assert len(text) <= report.LIMIT
    assert "_Trimmed to keep the report under GitHub's comment limit:" in text
    assert "of 5000 rows shown._" in text
    assert "| `test.roc_auc` | 0.7 | 0.72 | ▲ +0.02 ✅ |" in text  # the small table is whole
    assert "<details><summary>Slice metrics (5000 rows" in text


def test_small_report_is_not_trimmed() -> None:
    text = report.build(_slices(10), {}, Gates(), "", "title")
    assert "Trimmed" not in text
    assert text.count("| `slice.carrier.") == 10


def test_fit_fails_when_text_alone_is_too_long() -> None:
    with pytest.raises(StageError, match="90 characters over the 10 limit"):
        report.fit(["x" * 100], limit=10)


def test_gates_use_check_gates_and_name_missing_metrics() -> None:
    gates = Gates(min_roc_auc=0.7, max_brier=0.2, min_lift_over_dummy=0.1)
    head = {"test.roc_auc": 0.65, "test.brier": 0.1, "dummy.roc_auc": 0.5}
    rendered = report.gates_table(head, {}, gates).render()
    assert "| head | ❌ fail | test.roc_auc = 0.6500, gate requires >= 0.7 |" in rendered
    assert "| base | n/a | no metric test.roc_auc |" in rendered


def test_splice_replaces_only_the_marked_block() -> None:
    readme = f"# x\n{report.README_BEGIN}\nold\n{report.README_END}\n## Layout\n"
    assert report.splice(readme, "## new\n") == (
        f"# x\n{report.README_BEGIN}\n### new\n{report.README_END}\n## Layout\n"
    )
    with pytest.raises(StageError, match="README has no <!-- report:begin -->"):
        report.splice("# no markers\n", "new")


# --- the command on a real Git + DVC repository -------------------------------------------------

DVC_YAML = """\
metrics:
  - metrics/evaluate.json
  - metrics/benchmark.json
params:
  - params.yaml
plots:
  - plots/roc.csv:
      x: fpr
      y: tpr
      title: ROC curve (test)
"""
BASE = {
    "test.roc_auc": 0.70, "test.brier": 0.18, "test.log_loss": 0.55, "test.rows": 1000,
    "dummy.roc_auc": 0.5, "slice.origin.EWR.roc_auc": 0.69,
}  # fmt: skip
HEAD = {
    "test.roc_auc": 0.75, "test.brier": 0.19, "test.f1": 0.4, "test.rows": 1200,
    "dummy.roc_auc": 0.5, "slice.origin.EWR.roc_auc": 0.71,
}  # fmt: skip


def _write(repo: Path, evaluate: dict[str, float], ms: float, lr: float, roc: str) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "plots").mkdir(exist_ok=True)
    (repo / "metrics/evaluate.json").write_text(json.dumps(evaluate))
    (repo / "metrics/benchmark.json").write_text(json.dumps({"single_row_ms_p50": ms}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["candidates"]["hgb"]["learning_rate"] = lr
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "plots/roc.csv").write_text(roc)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Commits: 'empty' (no metrics: a first PR's base), 'base'; the working tree is the head."""
    path = tmp_path_factory.mktemp("report-repo")
    run(["git", "init", "-q", "-b", "main"], path)
    run(["dvc", "init", "-q"], path)
    shutil.copy(ROOT / "params.yaml", path / "params.yaml")
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "empty"], path)
    run(["git", "tag", "empty"], path)
    (path / "dvc.yaml").write_text(DVC_YAML)
    _write(path, BASE, 4.0, 0.05, "fpr,tpr\n0,0\n0.5,0.6\n1,1\n")
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "base"], path)
    _write(path, HEAD, 3.0, 0.1, "fpr,tpr\n0,0\n0.4,0.7\n1,1\n")
    return path


def _report(repo: Path, base: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(repo)
    assert report.main(["--base", base, "--out", f"out/{base}.md"]) == 0
    return (repo / f"out/{base}.md").read_text()


def test_report_against_a_base_with_metrics(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _report(repo, "main", monkeypatch)
    for row in (
        "| `test.roc_auc` | 0.7 | 0.75 | ▲ +0.05 ✅ |",  # improvement, higher is better
        "| `test.brier` | 0.18 | 0.19 | ▲ +0.01 ❌ |",  # regression, lower is better
        "| `test.f1` | — | 0.4 | new |",  # a metric the base lacks
        "| `test.log_loss` | 0.55 | — | removed |",
        "| `test.rows` | 1000 | 1200 | ▲ +200 |",  # a count: no mark
        "| `train.candidates.hgb.learning_rate` | 0.05 | 0.1 |",
        "| `benchmark` `single_row_ms_p50` | 4 | 3 | ▼ -1 ✅ |",
        "| head | ✅ pass | all gates met |",
    ):
        assert row in text, row
    details = text.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "| `slice.origin.EWR.roc_auc` | 0.69 | 0.71 | ▲ +0.02 ✅ |" in details
    assert "slice." not in text.split("<details>", 1)[0]
    assert "![ROC curve (test)](main_assets/roc.png)" in text
    assert "head only" not in text  # base and head side by side
    assert (repo / "out/main_assets/roc.png").read_bytes().startswith(b"\x89PNG")


def test_report_on_a_first_pr(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _report(repo, "empty", monkeypatch)
    assert "| `test.roc_auc` | — | 0.75 | new |" in text
    assert "| base | n/a | no metric test.roc_auc |" in text
    assert "ROC curve (test)** (head only" in text


def test_unknown_base_is_a_clear_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    assert report.main(["--base", "no-such-ref", "--out", "out/x.md"]) == 1
    assert "report: error: base 'no-such-ref' is not a commit here" in capsys.readouterr().err
    assert not (repo / "out/x.md").exists()
