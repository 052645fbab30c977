"""The native trees (treelite + tl2cgen + the C compiler): equal to the Pipeline, cached, saved,
refused when changed, and the ONNX trees wherever they cannot be built or loaded."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conftest import PLANES, ROOT, make_records, unavailable
from flightdelay.compile import native
from flightdelay.compile.compiler import TOLERANCE, compile_pipeline
from flightdelay.contract.schema import TARGET
from flightdelay.core.params import HGBParams, HistoryParams
from flightdelay.model.candidates import build
from flightdelay.model.store import load_model
from flightdelay.serving.runtime import NATIVE, ServingModel, TreeScorer

MODEL = ROOT / "models/model.joblib"
TEST = ROOT / "data/features/test.parquet"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test builds into a cache of its own."""
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def small() -> Pipeline:
    train = make_records(1500, seed=2)
    model = build("hgb", HGBParams(max_iter=25, min_samples_leaf=5), 3, PLANES, HistoryParams())
    return model.fit(train.drop(columns=[TARGET]), train[TARGET])


def trees(serving: ServingModel | None) -> TreeScorer:
    assert serving is not None
    assert isinstance(serving.scorer, TreeScorer)
    return serving.scorer


def test_the_committed_model_equals_the_pipeline_on_the_whole_test_set() -> None:
    if not MODEL.is_file() or not TEST.is_file():
        unavailable(f"{MODEL} or {TEST} not present: run the pipeline first (uv run dvc repro)")
    model, test = load_model(MODEL), pd.read_parquet(TEST).drop(columns=[TARGET])
    serving = compile_pipeline(model, native=True)
    assert trees(serving).native is not None
    expected = model.predict_proba(test)[:, 1]
    assert serving is not None
    got = serving.predict_columns(test)
    assert np.max(np.abs(got - expected)) <= TOLERANCE
    one = compile_pipeline(model, threads=1, native=True)  # split over threads or not: same
    assert one is not None
    np.testing.assert_array_equal(one.predict_columns(test), got)


@pytest.mark.parametrize(
    "rows", [1, native.BLOCK - 1, native.BLOCK, native.BLOCK + 1, 2 * native.BLOCK + 3]
)
def test_blocks_of_rows_give_each_row_its_own_score(small: Pipeline, rows: int) -> None:
    """Tree-major over blocks: a row's score does not depend on the block it falls in (bit for
    bit the score it gets alone) and equals scikit-learn's raw score."""
    scorer = trees(compile_pipeline(small, threads=1, native=True)).native
    if scorer is None:
        unavailable("no native trees here (treelite, tl2cgen or a C compiler missing)")
    frame = make_records(rows, seed=5).drop(columns=[TARGET])
    X = small.named_steps["features"].table().transform(frame)  # noqa: N806
    together = scorer.raw(X)
    alone = np.array([scorer.raw(X[i : i + 1])[0] for i in range(rows)])
    np.testing.assert_array_equal(together, alone)
    expected = small.steps[-1][1]._raw_predict(X)[:, 0]  # noqa: SLF001 - sklearn's margin
    assert np.max(np.abs(together - expected)) <= 1e-12


def test_built_once_then_read_from_the_cache(small: Pipeline, cache: Path) -> None:
    clf = small.named_steps["classifier"]
    first = native.build(clf)
    assert first is not None
    assert first.parent == cache
    stamp = first.stat().st_mtime_ns
    started = time.perf_counter()
    assert native.build(clf) == first
    assert first.stat().st_mtime_ns == stamp  # not rebuilt
    assert time.perf_counter() - started < 5  # noqa: PLR2004 - a lookup, not a compile


def test_without_a_compiler_the_onnx_trees_score(
    small: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CC", "no-such-compiler")
    with caplog.at_level(logging.INFO):
        serving = compile_pipeline(small, native=True)
    assert trees(serving).native is None
    assert "no C compiler 'no-such-compiler' on PATH" in caplog.text
    records = make_records(50, seed=5).drop(columns=[TARGET])
    assert serving is not None
    np.testing.assert_allclose(
        serving.predict_columns(records), small.predict_proba(records)[:, 1], atol=TOLERANCE
    )


def test_saved_with_the_model_and_refused_when_changed(
    small: Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    serving = compile_pipeline(small, native=True)
    assert trees(serving).native is not None
    assert serving is not None
    serving.save(tmp_path / "saved")
    records = make_records(300, seed=6).drop(columns=[TARGET])
    expected = small.predict_proba(records)[:, 1]
    loaded = ServingModel.load(tmp_path / "saved")
    assert trees(loaded).native is not None
    np.testing.assert_allclose(loaded.predict_columns(records), expected, atol=TOLERANCE)

    other = tmp_path / "other.so"  # another model's library in its place: not loaded
    shutil.copy(trees(serving).native.path, other)  # type: ignore[union-attr]
    with other.open("ab") as f:
        f.write(b"\0")
    other.replace(tmp_path / "saved" / NATIVE)  # a new file: the loaded one stays mapped
    with caplog.at_level(logging.WARNING):
        fallback = ServingModel.load(tmp_path / "saved")
    assert trees(fallback).native is None
    assert "is not the library saved with this model: using the ONNX trees" in caplog.text
    np.testing.assert_allclose(fallback.predict_columns(records), expected, atol=TOLERANCE)
