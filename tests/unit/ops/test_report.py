"""The pull-request report: pure formatting on tiny inputs, then the command on real Git + DVC
repositories: a base and a head commit of metrics, params and plots; plots drawn from DVC's
templates; the base's test predictions from the cache, the remote, or recomputed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import CHILD_ENV, ROOT, run
from flightdelay.core.dvc import dvc_json
from flightdelay.core.errors import StageError
from flightdelay.core.params import Gates
from flightdelay.ops import paired, plots, report, tables, verdict
from flightdelay.ops.significance import Interval


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
    assert tables.direction(key) == expected


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
def test_change(old: tables.Value, new: tables.Value, sense: int, expected: str) -> None:
    assert tables.change(old, new, sense) == expected


def test_fmt() -> None:
    assert [tables.fmt(v) for v in (None, 0.708744, 132540.9154, 0.0, -0.0, 53991, "hgb")] == [
        "—", "0.708744", "132540.9154", "0", "0", "53991", "hgb",
    ]  # fmt: skip


NO_INTERVALS = report.Noise({}, "No intervals: none here.")


def _diffs(metrics: dict[str, dict[str, dict[str, tables.Value]]]) -> report.Diffs:
    return report.Diffs("main", "0123456789abcdef", metrics)


def _slices(n: int) -> dict[str, dict[str, dict[str, tables.Value]]]:
    entries: dict[str, dict[str, tables.Value]] = {
        f"slice.carrier.C{i:05d}.roc_auc": {"old": 0.6, "new": 0.61} for i in range(n)
    }
    entries["test.roc_auc"] = {"old": 0.7, "new": 0.72}
    return {"metrics/evaluate.json": entries}


def test_oversized_report_is_trimmed_largest_table_first() -> None:
    gates = Gates(min_roc_auc=0.6, max_brier=0.2, min_lift_over_dummy=0.1)
    text = report.build(_diffs(_slices(5000)), gates, NO_INTERVALS)
    assert len(text) <= tables.LIMIT
    assert "_Trimmed to keep the report under GitHub's comment limit:" in text
    assert "of 5000 rows shown._" in text
    assert "| `test.roc_auc` | 0.7 | 0.72 | ▲ +0.02 ✅ | — | no interval |" in text  # kept whole
    assert "<details><summary>Slice metrics (5000 changed" in text


def test_small_report_is_not_trimmed() -> None:
    text = report.build(_diffs(_slices(10)), Gates(), NO_INTERVALS)
    assert "Trimmed" not in text
    assert text.count("| `slice.carrier.") == 10


def test_fit_fails_when_text_alone_is_too_long() -> None:
    with pytest.raises(StageError, match="90 characters over the 10 limit"):
        tables.fit(["x" * 100], limit=10)


def test_gates_use_check_gates_and_name_missing_metrics() -> None:
    gates = Gates(min_roc_auc=0.7, max_brier=0.2, min_lift_over_dummy=0.1)
    head = {"test.roc_auc": 0.65, "test.brier": 0.1, "dummy.roc_auc": 0.5}
    rendered = report.gates_table(head, {}, gates).render()
    assert "| head | ❌ fail | test.roc_auc = 0.6500, gate requires >= 0.7 |" in rendered
    assert "| base | n/a | no metric test.roc_auc |" in rendered


def test_unchanged_metrics_fold_into_one_collapsed_table() -> None:
    diff: dict[str, dict[str, dict[str, tables.Value]]] = {
        "metrics/evaluate.json": {
            "test.f1": {"old": 0.4, "new": 0.42},
            "test.rows": {"old": 1616, "new": 1616},
            "slice.origin.EWR.rows": {"old": 625, "new": 625},
        },
        "metrics/train.json": {"winner": {"old": "logreg", "new": "logreg"}},
        "metrics/benchmark.json": {"model_size_mb": {"old": 0.05, "new": 0.05}},
    }
    found = report.metric_tables(diff)
    assert [(t.title, t.collapsed) for t in found] == [
        ("Metrics: `metrics/evaluate.json`", False),
        ("Unchanged metrics (4)", True),
    ]
    assert found[1].rows == [
        ("`benchmark` `model_size_mb`", "0.05", "0.05", "= 0"),
        ("`test.rows`", "1616", "1616", "= 0"),
        ("`slice.origin.EWR.rows`", "625", "625", "= 0"),
        ("`winner`", "logreg", "logreg", ""),
    ]
    assert "<details><summary>Unchanged metrics (4)</summary>" in found[1].render()


TESTED: dict[str, dict[str, dict[str, tables.Value]]] = {
    "metrics/evaluate.json": {
        "test.roc_auc": {"old": 0.70, "new": 0.7123},
        "test.brier": {"old": 0.18, "new": 0.1789},
    }
}


@pytest.mark.parametrize(
    ("roc", "brier", "expected"),
    [
        (
            (0.0061, 0.0187),
            (-0.0024, 0.0002),
            "**Better?** Yes — improved beyond noise: ROC AUC +0.0123 [+0.0061, +0.0187]; "
            "within noise: Brier -0.0011 [-0.0024, +0.0002].",
        ),
        ((0.0061, 0.0187), (0.0001, 0.0004), "**Better?** Mixed — improved beyond noise: ROC AUC"),
        ((-0.002, 0.03), (0.0001, 0.0004), "**Better?** No, worse — regressed beyond noise: Brier"),
        ((-0.002, 0.03), (-0.0024, 0.0002), "**Better?** No change beyond noise — within noise:"),
    ],
)
def test_the_answer_groups_changes_by_their_verdict(
    roc: tuple[float, float], brier: tuple[float, float], expected: str
) -> None:
    intervals = {
        "roc_auc": Interval("roc_auc", 0.0123, *roc),
        "brier": Interval("brier", -0.0011, *brier),
    }
    assert verdict.answer(TESTED, intervals).startswith(expected)


def test_without_intervals_the_answer_says_so_and_gives_the_changes() -> None:
    assert verdict.answer(TESTED, {}) == (
        "**Better?** Cannot tell without intervals; changes: ROC AUC +0.0123 · Brier -0.0011."
    )


def test_headline_is_three_lines_gates_first() -> None:
    intervals = {"roc_auc": Interval("roc_auc", 0.0123, 0.0061, 0.0187)}
    status = {"head": "✅ pass", "base": "❌ fail"}
    lines = verdict.headline(status, TESTED, intervals, "how").split("\n\n")
    assert lines == [
        "**Gates:** ✅ pass (head) · ❌ fail (base)",
        "**Better?** Yes — improved beyond noise: ROC AUC +0.0123 [+0.0061, +0.0187].",
        "<sub>how</sub>",
    ]


def test_interval_table_rows() -> None:
    intervals = {"roc_auc": Interval("roc_auc", 0.0123, 0.0061, 0.0187)}
    table = verdict.interval_table(TESTED, intervals, 0.95)
    assert table is not None
    assert table.header[-2:] == ("95 % interval", "verdict")
    assert table.rows == [
        ("`test.roc_auc`", "0.7", "0.7123", "▲ +0.0123 ✅", "[+0.0061, +0.0187]",
         "an improvement beyond noise"),
        ("`test.brier`", "0.18", "0.1789", "▼ -0.0011 ✅", "—", "no interval"),
    ]  # fmt: skip
    assert verdict.interval_table({}, intervals, 0.95) is None


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


GATES = {"min_roc_auc": 0.6, "max_brier": 0.2, "min_lift_over_dummy": 0.1}


def _write(repo: Path, evaluate: dict[str, float], ms: float, lr: float, roc: str) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "plots").mkdir(exist_ok=True)
    (repo / "metrics/evaluate.json").write_text(json.dumps(evaluate))
    (repo / "metrics/benchmark.json").write_text(json.dumps({"single_row_ms_p50": ms}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["candidates"]["hgb"]["learning_rate"] = lr
    params["evaluate"]["gates"] = GATES  # its own, whatever the project's are today
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
    top = text.split("### ", 1)[0]
    assert "**Gates:** ✅ pass (head) · ✅ pass (base)" in top
    assert (
        "**Better?** Cannot tell without intervals; changes: ROC AUC +0.0500 · Brier +0.0100" in top
    )
    assert "No intervals: no stage of dvc.yaml writes test predictions." in top
    for row in (
        "| `test.roc_auc` | 0.7 | 0.75 | ▲ +0.05 ✅ | — | no interval |",  # higher is better
        "| `test.brier` | 0.18 | 0.19 | ▲ +0.01 ❌ | — | no interval |",  # lower is better
        "| `test.log_loss` | 0.55 | — | removed | — | no interval |",
        "| `test.f1` | — | 0.4 | new |",  # a metric the base lacks
        "| `test.rows` | 1000 | 1200 | ▲ +200 |",  # a count: no mark
        "| `train.candidates.hgb.learning_rate` | 0.05 | 0.1 |",
        "| `benchmark` `single_row_ms_p50` | 4 | 3 | ▼ -1 ✅ |",
        "| head | ✅ pass | all gates met |",
    ):
        assert row in text, row
    details = text.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "| `slice.origin.EWR.roc_auc` | 0.69 | 0.71 | ▲ +0.02 ✅ |" in details
    assert "slice." not in text.split("<details>", 1)[0]
    unchanged = text.split("<details><summary>Unchanged metrics (1)</summary>", 1)[1]
    assert "| `dummy.roc_auc` | 0.5 | 0.5 | = 0 |" in unchanged.split("</details>", 1)[0]
    assert "![ROC curve (test)](main_assets/roc.png)" in text
    assert "head only" not in text  # base and head in one chart, as DVC draws them
    assert (repo / "out/main_assets/roc.png").read_bytes().startswith(b"\x89PNG")


def test_report_on_a_first_pr(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _report(repo, "empty", monkeypatch)
    assert "| `test.roc_auc` | — | 0.75 | new | — | no interval |" in text
    assert "**Gates:** ✅ pass (head) · n/a (base)" in text
    assert "| base | n/a | no metric test.roc_auc |" in text
    assert "ROC curve (test)** (head only" in text


def test_unknown_base_is_a_clear_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    assert report.main(["--base", "no-such-ref", "--out", "out/x.md"]) == 1
    assert "report: error: base 'no-such-ref' is not a commit here" in capsys.readouterr().err
    assert not (repo / "out/x.md").exists()


# --- plots: DVC's templates, rendered ------------------------------------------------------------


def test_a_changed_template_in_dvc_yaml_changes_the_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same data drawn with template `linear`, then `scatter`: DVC fills a different Vega-Lite
    spec, and the report's PNG differs."""
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots/roc.csv").write_text("fpr,tpr\n0,0\n0.2,0.5\n0.5,0.7\n1,1\n")
    template = "plots:\n  - plots/roc.csv:\n      x: fpr\n      y: tpr\n      template: {}\n"
    (tmp_path / "dvc.yaml").write_text(template.format("linear"))
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-qm", "plots"], tmp_path)
    drawn = {}
    for name in ("linear", "scatter"):
        (tmp_path / "dvc.yaml").write_text(template.format(name))
        (spec,) = plots.specs(dvc_json(["plots", "diff", "HEAD"], tmp_path))
        assert spec.revisions == ("workspace", "HEAD")
        monkeypatch.chdir(tmp_path)
        args = [
            "--base",
            "HEAD",
            "--out",
            f"{name}/report.md",
            "--params",
            str(ROOT / "params.yaml"),
        ]
        assert report.main(args) == 0
        drawn[name] = (spec.spec, (tmp_path / name / "report_assets/roc.png").read_bytes())
    (linear, linear_png), (scatter, scatter_png) = drawn["linear"], drawn["scatter"]
    assert scatter["mark"]["type"] == "point"
    assert "mark" not in linear and {"line", "circle"} <= {
        layer["mark"]["type"] for layer in linear["layer"] if isinstance(layer.get("mark"), dict)
    }
    assert linear_png.startswith(b"\x89PNG") and scatter_png.startswith(b"\x89PNG")
    assert linear_png != scatter_png
    assert plots.png(plots.Plot("x", "x", linear, ())) == linear_png  # same spec, same picture


def test_spec_versions_and_render_errors_are_named() -> None:
    assert plots.vegalite_version({"$schema": "https://vega.github.io/schema/vega-lite/v5.json"})
    assert str(plots.vegalite_version({"$schema": "x/vega-lite/v5.json"})).startswith("5.")
    assert plots.vegalite_version({}) is None
    external = {"mark": "point", "data": {"url": "https://example.invalid/x.csv"}}
    with pytest.raises(StageError, match=r"plot 'roc' \(ROC\): .*url not allowed"):
        plots.png(plots.Plot("roc", "ROC", external, ()))


# --- the base's test predictions: local cache, remote, or recomputed -----------------------------

PREDICT = """\
import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--predictions")
out = Path(parser.parse_args().predictions)
noise = yaml.safe_load(Path("params.yaml").read_text())["noise"]
rng = np.random.default_rng(0)
risk = rng.normal(size=600)
delayed = risk + rng.normal(size=600) > 0.8
proba = 1 / (1 + np.exp(-(risk + noise * rng.normal(size=600) - 1)))
out.parent.mkdir(exist_ok=True)
pd.DataFrame({"row": np.arange(600), "delayed": delayed, "proba": proba}).to_parquet(out)
"""
STAGES = """\
stages:
  evaluate:
    cmd: python predict.py --predictions predictions/test.parquet
    deps: [predict.py]
    params: [noise]
    outs: [predictions/test.parquet]
"""


@pytest.fixture(scope="module")
def pair_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage writing test predictions; commit 'base' with noisy ones, a better working tree."""
    path = tmp_path_factory.mktemp("pair-repo")
    run(["git", "init", "-q", "-b", "main"], path)
    run(["dvc", "init", "-q"], path)
    (path / "predict.py").write_text(PREDICT)
    (path / "dvc.yaml").write_text(STAGES)
    (path / "params.yaml").write_text("noise: 3.0\n")
    run(["dvc", "repro", "-q"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "base"], path)
    (path / "params.yaml").write_text("noise: 0.3\n")
    run(["dvc", "repro", "-q"], path)
    return path


def _copy(repo: Path, dest: Path) -> Path:
    """A copy of ``repo`` without the base's predictions in its DVC cache."""
    shutil.copytree(repo, dest, symlinks=True)
    lock = yaml.safe_load(run(["git", "show", "HEAD:dvc.lock"], dest).stdout)
    md5 = lock["stages"]["evaluate"]["outs"][0]["md5"]
    (dest / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).unlink()
    return dest


def _load(repo: Path, monkeypatch: pytest.MonkeyPatch) -> paired.Paired:
    monkeypatch.setenv("PATH", CHILD_ENV["PATH"])  # the stage's `python`: this environment's
    sha = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    return paired.load("HEAD", sha, repo)


def test_base_predictions_from_the_local_cache(
    pair_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = _load(pair_repo, monkeypatch)
    assert pair.source == "read from the local DVC cache"
    assert len(pair.y) == len(pair.base) == len(pair.head) == 600
    assert not np.array_equal(pair.base, pair.head)


def test_base_predictions_from_the_remote_when_the_cache_lacks_them(
    pair_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(pair_repo, repo, symlinks=True)
    run(["dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "remote")], repo)
    run(["dvc", "push", "-q", "--all-commits"], repo)
    cached = _load(repo, monkeypatch)
    _copy(repo, tmp_path / "copy")
    pair = _load(tmp_path / "copy", monkeypatch)
    assert pair.source == "read from the DVC remote"
    assert np.array_equal(pair.base, cached.base)


def test_base_predictions_recomputed_in_a_worktree_when_neither_has_them(
    pair_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _copy(pair_repo, tmp_path / "repo")
    pair = _load(repo, monkeypatch)
    assert pair.source == "recomputed (`dvc repro evaluate` of the base)"
    assert np.array_equal(pair.base, _load(pair_repo, monkeypatch).base)  # the same predictions
    assert len(run(["git", "worktree", "list"], repo).stdout.splitlines()) == 1  # removed again


def test_the_report_of_a_better_head_shows_intervals(
    pair_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pair_repo)
    args = ["--base", "HEAD", "--out", "out/report.md", "--params", str(ROOT / "params.yaml")]
    assert report.main(args) == 0
    text = (pair_repo / "out/report.md").read_text()
    assert "**Better?** Yes — improved beyond noise: ROC AUC +0." in text
    assert (
        "95 % paired-bootstrap intervals of head − base: 1,000 resamples (seed 2013) of the same "
        "600 test flights, both models scored on each; the base's predictions were read from the "
        "local DVC cache."
    ) in text
    assert "| `noise` | 3 | 0.3 |" in text


@pytest.mark.parametrize(
    ("base", "head", "message"),
    [
        ({"row": [0, 1]}, {"row": [0, 1]}, r"the base's predictions lack the columns \['delayed'"),
        (
            {"row": [0, 1, 2], "delayed": [True, False, True], "proba": [0.1, 0.2, 0.3]},
            {"row": [0, 1], "delayed": [True, False], "proba": [0.1, 0.2]},
            "the base's 3 and the head's 2 test flights are not the same flights",
        ),
        (
            {"row": [0, 1], "delayed": [True, True], "proba": [0.1, 0.2]},
            {"row": [1, 0], "delayed": [True, True], "proba": [0.1, 0.2]},
            "one class only",
        ),
    ],
)
def test_predictions_that_cannot_be_paired_say_why(
    base: dict[str, list[object]], head: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(paired.UnpairedError, match=message):
        paired._pair(pd.DataFrame(base), pd.DataFrame(head), "read")


def test_pairing_sorts_by_row() -> None:
    base = pd.DataFrame({"row": [1, 0], "delayed": [False, True], "proba": [0.2, 0.9]})
    head = pd.DataFrame({"row": [0, 1], "delayed": [True, False], "proba": [0.8, 0.1]})
    pair = paired._pair(base, head, "read")
    assert pair.y.tolist() == [True, False]
    assert pair.base.tolist() == [0.9, 0.2]
    assert pair.head.tolist() == [0.8, 0.1]


def test_declared_finds_the_stage_that_writes_predictions() -> None:
    assert paired.declared(STAGES) == paired.Output("evaluate", "predictions/test.parquet")
    assert paired.declared((ROOT / "dvc.yaml").read_text()) == paired.Output(
        "evaluate", "predictions/test.parquet"
    )
    assert paired.declared("plots: []\n") is None
    with pytest.raises(StageError, match="dvc.yaml is not YAML"):
        paired.declared("stages: [")
