"""The compiled path against the sklearn Pipeline (the reference): same features, same
probabilities to 1e-6, row by row and in bulk, compiled in memory and saved then read back."""

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline

from conftest import PLANES, ROOT, make_records, unavailable
from flightdelay.compile import compiler as fastpath
from flightdelay.compile.compiler import compile_pipeline
from flightdelay.contract.schema import TARGET
from flightdelay.core.params import BenchmarkParams, HGBParams, LogRegParams
from flightdelay.model.candidates import FlightFeatures, build
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import load_model, save_model
from flightdelay.pipeline import benchmark
from flightdelay.serving.runtime import (
    MANIFEST,
    PARALLEL_ROWS,
    SMALL_ROWS,
    ServingModel,
    ServingModelError,
    TreeScorer,
)

FEATURES_DIR = ROOT / "data" / "features"
MODEL = ROOT / "models" / "model.joblib"
PARAMS = {"hgb": HGBParams(max_iter=40, min_samples_leaf=5), "logreg": LogRegParams(max_iter=300)}


def _unseen(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows the training data never showed: new categories and tails, no weather at all."""
    odd = frame.head(6).copy()
    odd["dest"] = ["ZZZ", "ORD", "SFO", "ATL", "ZZZ", "BOS"]
    odd["carrier"] = ["ZZ", "UA", "AA", "Q9", "B6", "UA"]
    odd["tailnum"] = ["N404", None, "N1", "N2", "N3", None]
    odd.iloc[::2, odd.columns.get_loc("temp") :] = np.nan
    return odd


@pytest.fixture(scope="module")
def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit rows and scoring rows (with unseen values) from the synthetic generator."""
    scored = make_records(300, seed=11).drop(columns=[TARGET])
    return make_records(3000, seed=3), pd.concat([_unseen(scored), scored], ignore_index=True)


def _fit(name: str, train: pd.DataFrame, planes: pd.DataFrame) -> Pipeline:
    model = build(name, PARAMS[name], 7, planes)
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


@pytest.fixture(scope="module")
def fitted(synthetic: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Pipeline]:
    """Each candidate fitted once on the synthetic rows."""
    return {name: _fit(name, synthetic[0], PLANES) for name in PARAMS}


def _fast(model: Pipeline) -> ServingModel:
    fast = compile_pipeline(model)
    assert fast is not None
    return fast


def _saved(model: Pipeline, directory: Path) -> ServingModel:
    """Compiled, saved and read back, as the API loads it."""
    _fast(model).save(directory)
    return ServingModel.load(directory)


def _in_chunks(fast: ServingModel, records: list[dict[str, object]], size: int) -> np.ndarray:
    parts = [fast.predict_records(records[i : i + size]) for i in range(0, len(records), size)]
    return np.concatenate(parts)


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def test_row_and_column_features_equal_transform(synthetic: tuple[pd.DataFrame, ...]) -> None:
    train, scored = synthetic
    features = FlightFeatures(PLANES).fit(train.drop(columns=[TARGET]))
    records = _records(scored)
    records[1]["day"] = 31  # 2013-mm-31 rolls over like numpy's datetime64 in February
    records[1]["month"] = 2
    del records[2]["temp"]  # an absent weather key is missing, like an absent column
    frame = pd.DataFrame(records)
    expected = features.transform(frame)
    table = features.table()
    np.testing.assert_array_equal(table.rows(records), expected)
    np.testing.assert_array_equal(table.columns(records), expected)


@pytest.mark.parametrize("name", ["hgb", "logreg"])
@pytest.mark.parametrize("size", [1, SMALL_ROWS, SMALL_ROWS + 1, 1000])
def test_compiled_equals_pipeline(
    name: str,
    size: int,
    synthetic: tuple[pd.DataFrame, pd.DataFrame],
    fitted: dict[str, Pipeline],
) -> None:
    scored, model = synthetic[1], fitted[name]
    got = _in_chunks(_fast(model), _records(scored), size)
    np.testing.assert_allclose(got, predict_proba(model, scored), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["hgb", "logreg"])
def test_saved_and_loaded_equals_pipeline(
    name: str,
    synthetic: tuple[pd.DataFrame, pd.DataFrame],
    fitted: dict[str, Pipeline],
    tmp_path: Path,
) -> None:
    """The files the API reads give the Pipeline's probabilities, one row and all rows."""
    scored, model = synthetic[1], fitted[name]
    loaded, records = _saved(model, tmp_path), _records(scored)
    expected = predict_proba(model, scored)
    np.testing.assert_allclose(loaded.predict_records(records), expected, rtol=0, atol=1e-6)
    single = [loaded.predict_records([r])[0] for r in records[:20]]
    np.testing.assert_allclose(single, expected[:20], rtol=0, atol=1e-6)
    features = model.named_steps["features"]
    assert loaded.categories == features.categories_
    tails = list(features.planes_)
    assert list(loaded.features.planes) == tails
    np.testing.assert_array_equal(  # NaN (an unknown year) equals NaN here
        [loaded.features.planes[t] for t in tails], [features.planes_[t] for t in tails]
    )
    np.testing.assert_array_equal(loaded.features.holidays, features.holidays_)


def test_large_inputs_run_on_several_threads_with_the_same_result(
    synthetic: tuple[pd.DataFrame, pd.DataFrame], fitted: dict[str, Pipeline]
) -> None:
    scored, model = synthetic[1], fitted["hgb"]
    frame = pd.concat([scored] * (PARALLEL_ROWS // len(scored) + 1), ignore_index=True)
    two = compile_pipeline(model, threads=2)
    assert two is not None
    got = two.predict_records(_records(frame))
    assert isinstance(two.scorer, TreeScorer)
    assert two.scorer._parallel is not None  # the multi-threaded session did the work
    np.testing.assert_allclose(got, predict_proba(model, frame), rtol=0, atol=1e-6)


def _attributes(scorer: object) -> dict[str, list[float]]:
    """The TreeEnsemble node's attributes, as lists."""
    import onnx  # noqa: PLC0415

    assert isinstance(scorer, TreeScorer) and scorer.onnx is not None
    (node,) = onnx.load_from_string(scorer.onnx).graph.node
    return {
        a.name: onnx.numpy_helper.to_array(a.t).tolist() if a.type == a.TENSOR else list(a.ints)
        for a in node.attribute
    }


def test_compiled_trees_cover_categorical_and_missing_splits(fitted: dict[str, Pipeline]) -> None:
    """The synthetic model must exercise the branches the equality tests are meant to check."""
    attrs = _attributes(_fast(fitted["hgb"]).scorer)
    modes, missing_left = attrs["nodes_modes"], attrs["nodes_missing_value_tracks_true"]
    member = [i for i, mode in enumerate(modes) if mode == 6]  # noqa: PLR2004 - BRANCH_MEMBER
    numeric = [i for i, mode in enumerate(modes) if mode == 0]  # BRANCH_LEQ
    assert member
    assert {missing_left[i] for i in member} == {0, 1}  # NaN codes go both ways
    assert {missing_left[i] for i in numeric} == {0, 1}


def _with_stumps(model: Pipeline, values: list[float]) -> Pipeline:
    """``model`` with its last trees replaced by single leaves of ``values`` (which fitting
    produces when nothing is left to learn)."""
    from sklearn.ensemble._hist_gradient_boosting.common import (  # noqa: PLC0415
        PREDICTOR_RECORD_DTYPE,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import (  # noqa: PLC0415
        TreePredictor,
    )

    stumped = copy.deepcopy(model)
    clf = stumped.steps[-1][1]
    for k, value in enumerate(values, start=len(clf._predictors) - len(values)):
        nodes = np.zeros(1, dtype=PREDICTOR_RECORD_DTYPE)
        nodes["is_leaf"], nodes["value"] = 1, value
        empty = np.zeros((0, 8), dtype=np.uint32)
        clf._predictors[k] = [TreePredictor(nodes, empty, empty)]
    return stumped


@pytest.mark.parametrize("stumps", [3, 40])  # some trees, then all of them
def test_single_leaf_trees_count_their_value(
    stumps: int, fitted: dict[str, Pipeline], synthetic: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    model = _with_stumps(fitted["hgb"], [0.3, -0.2, 0.45] * (stumps // 3) + [0.1] * (stumps % 3))
    scored = synthetic[1]
    fast = _fast(model)
    assert isinstance(fast.scorer, TreeScorer)
    assert (fast.scorer.onnx is None) == (stumps == 40)  # noqa: PLR2004
    expected = predict_proba(model, scored)
    assert np.abs(expected - predict_proba(fitted["hgb"], scored)).max() > 0.01
    np.testing.assert_allclose(fast.predict_records(_records(scored)), expected, atol=1e-6)


def test_a_compiled_form_that_differs_from_the_pipeline_is_not_used(
    fitted: dict[str, Pipeline], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe check: a fitted state read wrongly (here: an intercept off by 1e-3) is caught."""
    real = fastpath._linear

    def skewed(*steps: object) -> object:
        scorer = real(*steps)  # type: ignore[arg-type]
        scorer.intercept += 1e-3
        return scorer

    monkeypatch.setattr(fastpath, "_linear", skewed)
    with caplog.at_level(logging.WARNING, logger="flightdelay.compile.compiler"):
        assert compile_pipeline(fitted["logreg"]) is None
    assert "differs from the Pipeline by" in caplog.text


def test_loading_needs_neither_sklearn_nor_pandas(
    fitted: dict[str, Pipeline], tmp_path: Path
) -> None:
    """The API's worker process: load the saved model and score, with no sklearn/pandas import."""
    _fast(fitted["hgb"]).save(tmp_path)
    code = (
        "import json, sys\n"
        "from flightdelay.serving.runtime import ServingModel\n"
        f"model = ServingModel.load({str(tmp_path)!r}, threads=1)\n"
        "flight = dict(year=2013, month=1, day=1, sched_dep_time=900, sched_arr_time=1200,\n"
        "              carrier='UA', origin='EWR', dest='ORD', distance=719, tailnum='N1')\n"
        "p = float(model.predict_records([flight])[0])\n"
        "heavy = [m for m in ('sklearn', 'scipy', 'pandas', 'pyarrow') if m in sys.modules]\n"
        "print(json.dumps({'p': p, 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert 0.0 < result["p"] < 1.0
    assert result["heavy"] == []


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _edit(directory: Path, **changes: object) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    (directory / MANIFEST).write_text(json.dumps(manifest | changes))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MANIFEST).unlink(), "cannot read the serving model"),
        (lambda d: (d / "trees.onnx").unlink(), "damaged serving model"),
        (lambda d: (d / "trees.onnx").write_bytes(b"junk"), "damaged serving model"),
        (lambda d: _truncate(d / "serving.npz"), "cannot read the serving model"),
        (lambda d: (d / MANIFEST).write_text("null"), "not a serving model this code reads"),
        (lambda d: (d / MANIFEST).write_text('{"format": 99}'), "not a serving model"),
        (lambda d: _edit(d, categories=None), "damaged serving model"),
    ],
)
def test_a_damaged_serving_model_is_a_clear_error(
    damage: object, message: str, fitted: dict[str, Pipeline], tmp_path: Path
) -> None:
    _fast(fitted["hgb"]).save(tmp_path)
    damage(tmp_path)  # type: ignore[operator]
    with pytest.raises(ServingModelError, match=message):
        ServingModel.load(tmp_path)


def test_unsupported_model_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    train = make_records(200)
    model = Pipeline([("classifier", HistGradientBoostingClassifier(max_iter=3))])
    model.fit(train[["distance", "temp"]], train[TARGET])
    with caplog.at_level(logging.WARNING, logger="flightdelay.compile.compiler"):
        assert compile_pipeline(model) is None
    assert "first step is not FlightFeatures" in caplog.text
    assert "using the sklearn Pipeline" in caplog.text


def _whole_test_set() -> pd.DataFrame:
    path = FEATURES_DIR / "test.parquet"
    if not path.exists():
        unavailable(f"{path} not present: run the pipeline first (uv run --locked dvc repro)")
    return pd.read_parquet(path).drop(columns=[TARGET])


def _check_whole_test_set(model: Pipeline, test: pd.DataFrame, directory: Path) -> None:
    """Bulk path and row-by-row features on every test row, saved and read back, plus the public
    single-row call on a spread of rows."""
    fast, records = _saved(model, directory), _records(test)
    expected = predict_proba(model, test)
    np.testing.assert_allclose(fast.predict_records(records), expected, rtol=0, atol=1e-6)
    matrix = fast.features.rows(records)
    np.testing.assert_array_equal(matrix, model.named_steps["features"].transform(test))
    np.testing.assert_allclose(fast.scorer.proba(matrix), expected, rtol=0, atol=1e-6)
    spread = range(0, len(records), 97)
    single = [fast.predict_records([records[i]])[0] for i in spread]
    np.testing.assert_allclose(single, expected[list(spread)], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_real_model_on_the_whole_test_set(tmp_path: Path) -> None:
    test = _whole_test_set()
    if not Path(MODEL).exists():
        unavailable(f"{MODEL} not present: run the pipeline first (uv run --locked dvc repro)")
    _check_whole_test_set(load_model(MODEL), test, tmp_path)


@pytest.mark.parametrize("name", ["hgb", "logreg"])
def test_models_fitted_on_a_sample_on_the_whole_test_set(name: str, tmp_path: Path) -> None:
    test = _whole_test_set()
    train = pd.read_parquet(FEATURES_DIR / "train.parquet").sample(frac=0.03, random_state=1)
    planes = pd.read_parquet(FEATURES_DIR / "planes.parquet")
    _check_whole_test_set(_fit(name, train, planes), test, tmp_path)


#: the keys of benchmark.run for batches of 5: per path (reference, then ``fast_``) the latency
#: percentiles and the bulk throughput, plus loads, ratios, agreement, size and memory
BENCHMARK_KEYS = {
    f"{path}{timing}"
    for path in ("", "fast_")
    for timing in (
        *(f"{kind}_ms_p{q}" for kind in ("single_row", "batch_5") for q in (50, 95, 99)),
        "bulk_rows_per_s",
        "load_ms_median",
    )
} | {
    "served_load_ms_median", "fast_compiled", "fast_max_abs_diff", "single_row_speedup",
    "batch_5_speedup", "bulk_speedup", "model_size_mb", "peak_rss_mb",
    "native_compiled", "native_max_abs_diff",
    "bulk_frame_onnx_speedup", "bulk_frame_native_speedup",
} | {f"bulk_frame_{name}_rows_per_s" for name in ("pipeline", "onnx", "native")}  # fmt: skip


def test_benchmark_reports_both_paths_and_their_ratio(
    fitted: dict[str, Pipeline],
    synthetic: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every figure comes from the timings taken for it: the percentiles and medians of the
    calls timed, rows/s from the bulk rows and their time, each speedup the ratio of the two
    paths' figures. run times the loads first (Pipeline, compiled, served form), then for each
    path, the reference first, the single rows, the batches and the bulk input."""
    save_model(fitted["hgb"], tmp_path / "model.joblib")
    params = BenchmarkParams(single_rows=12, batch_size=5, batches=6, bulk_rows=200)
    measured = benchmark.latencies_ms
    timed: list[np.ndarray] = []

    def recorded(call: Callable[[int], object], n: int) -> np.ndarray:
        timed.append(measured(call, n))
        return timed[-1]

    monkeypatch.setattr(benchmark, "latencies_ms", recorded)
    rss_before_mb = psutil.Process().memory_info().rss / 2**20
    result = benchmark.run(tmp_path / "model.joblib", synthetic[1], params, seed=1)
    assert set(result) == BENCHMARK_KEYS
    assert all(isinstance(v, float) for v in result.values())  # flat: numbers only
    frame_calls = [benchmark.BULK_REPEATS] * 3  # bulk, frame in: Pipeline, ONNX, native
    assert [len(ms) for ms in timed] == [benchmark.LOADS] * 3 + [12, 6, 1] * 2 + frame_calls
    loads, fast_loads, served, *paths = timed[:-3]
    for name, ms in zip(("pipeline", "onnx", "native"), timed[-3:], strict=True):
        rate = result[f"bulk_frame_{name}_rows_per_s"]
        assert rate == pytest.approx(200 / (np.median(ms) / 1000)), name
    for name in ("onnx", "native"):
        ratio = result[f"bulk_frame_{name}_rows_per_s"] / result["bulk_frame_pipeline_rows_per_s"]
        assert result[f"bulk_frame_{name}_speedup"] == pytest.approx(ratio), name
    assert result["native_compiled"] == 1.0
    assert result["native_max_abs_diff"] < 1e-6
    assert result["load_ms_median"] == np.median(loads) > 0
    assert result["fast_load_ms_median"] == np.median(fast_loads) > 0
    assert result["served_load_ms_median"] == np.median(served) > 0
    for path, (single, batch, bulk) in zip(("", "fast_"), (paths[:3], paths[3:]), strict=True):
        for kind, ms in (("single_row", single), ("batch_5", batch)):
            got = [result[f"{path}{kind}_ms_p{q}"] for q in (50, 95, 99)]
            assert got == [np.percentile(ms, q) for q in (50, 95, 99)], (path, kind)
            assert 0 < got[0] <= got[1] <= got[2], (path, kind)
        assert result[f"{path}bulk_rows_per_s"] == pytest.approx(200 / (bulk[0] / 1000))
    for speedup, (slow, fast) in {
        "single_row_speedup": ("single_row_ms_p50", "fast_single_row_ms_p50"),
        "batch_5_speedup": ("batch_5_ms_p50", "fast_batch_5_ms_p50"),
        "bulk_speedup": ("fast_bulk_rows_per_s", "bulk_rows_per_s"),  # a rate: fast over slow
    }.items():
        assert result[speedup] == pytest.approx(result[slow] / result[fast]), speedup
    assert result["fast_compiled"] == 1.0
    assert result["fast_max_abs_diff"] < 1e-6
    assert result["model_size_mb"] == (tmp_path / "model.joblib").stat().st_size / 2**20
    assert result["peak_rss_mb"] >= rss_before_mb  # the peak of this process, in MiB
