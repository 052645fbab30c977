"""Predictor: the records path the service calls equals the reference Pipeline path."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from conftest import PLANES, make_records
from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import RECORD_COLUMNS, TARGET, Flight
from flightdelay.core.errors import StageError
from flightdelay.core.params import HGBParams
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba, records_frame
from flightdelay.model.store import save_model


@pytest.fixture(scope="module")
def model() -> Pipeline:
    train = make_records(1500, seed=2)
    fitted = build("hgb", HGBParams(max_iter=40, min_samples_leaf=5), 3, PLANES)
    return fitted.fit(train.drop(columns=[TARGET]), train[TARGET])


def _flights(n: int) -> list[dict[str, object]]:
    """API-shaped records: validated ``Flight`` dumps, with None for missing weather."""
    frame = make_records(n, seed=9).drop(columns=[TARGET])
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [Flight.model_validate(row).model_dump() for row in rows]


def test_records_frame_has_contract_columns_in_order() -> None:
    frame = records_frame(_flights(2))
    assert list(frame.columns) == list(RECORD_COLUMNS)
    assert len(frame) == 2


@pytest.mark.parametrize("n", [1, 7, 250])
def test_predict_records_equals_the_reference(model: Pipeline, n: int) -> None:
    flights = _flights(n)
    got = Predictor(model).predict_records(flights)
    expected = predict_proba(model, records_frame(flights))
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_empty_request_gives_empty_answer(model: Pipeline) -> None:
    assert Predictor(model).predict_records([]).shape == (0,)


def test_from_path_loads_and_compiles(model: Pipeline, tmp_path: Path) -> None:
    save_model(model, tmp_path / "model.joblib")
    predictor = Predictor.from_path(tmp_path / "model.joblib")
    assert predictor.fast is not None
    flights = _flights(3)
    np.testing.assert_allclose(
        predictor.predict_records(flights), Predictor(model).predict_records(flights), atol=1e-12
    )


def test_from_path_names_a_missing_or_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"absent\.joblib: cannot load model"):
        Predictor.from_path(tmp_path / "absent.joblib")
    joblib.dump({"not": "a pipeline"}, tmp_path / "dict.joblib")
    with pytest.raises(StageError, match=r"dict\.joblib: expected a sklearn Pipeline, got dict"):
        Predictor.from_path(tmp_path / "dict.joblib")


def test_concurrent_callers_get_their_own_answers(model: Pipeline) -> None:
    """The service calls one Predictor from many threads; answers must not mix. Each caller
    sends flights no other caller sends (sizes on both sides of the small-input and the parallel
    thresholds), so an answer meant for another caller, even one of the same size, shows."""
    predictor = Predictor(model)
    sizes = [1, 3, 1, 20, 1, 5, 70] * 5
    flights = _flights(sum(sizes))
    starts = np.cumsum([0, *sizes[:-1]])
    requests = [flights[s : s + n] for s, n in zip(starts, sizes, strict=True)]
    expected = predict_proba(model, pd.DataFrame(flights, columns=list(RECORD_COLUMNS)))
    assert len(np.unique(expected.round(9))) > 0.9 * len(expected)  # the answers tell apart
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(predictor.predict_records, requests))
    for start, size, answer in zip(starts, sizes, answers, strict=True):
        np.testing.assert_allclose(answer, expected[start : start + size], rtol=0, atol=1e-6)


def test_unsupported_model_uses_the_reference(model: Pipeline) -> None:
    predictor = Predictor(model)
    predictor.fast = None  # as for a model the compiler does not know
    flights = _flights(4)
    np.testing.assert_allclose(
        predictor.predict_records(flights), predict_proba(model, records_frame(flights)), atol=0
    )
