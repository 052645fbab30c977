"""Behavioural tests of the trained model (models/model.joblib) on the test flights, after
Made-With-ML: invariance, direction and minimum functionality.

Invariance covers what the request contract promises: the tail number's case (``Flight``
upper-cases it), the order of a record's fields and of the rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from conftest import ROOT, unavailable
from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import TARGET, Flight
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import load_model

MODEL = ROOT / "models" / "model.joblib"
TEST = ROOT / "data" / "features" / "test.parquet"
#: routes with at least this many test flights have an observed delay rate worth comparing
MIN_FLIGHTS = 200
EXTREMES = 10  # routes at each end of the observed delay rate


def _need(path: Path) -> None:
    if not path.exists():
        unavailable(f"{path} not present: run the pipeline first (uv run --locked dvc repro)")


@pytest.fixture(scope="module")
def model() -> Pipeline:
    _need(MODEL)
    return load_model(MODEL)


@pytest.fixture(scope="module")
def test_set() -> pd.DataFrame:
    _need(TEST)
    return pd.read_parquet(TEST)


@pytest.fixture(scope="module")
def proba(model: Pipeline, test_set: pd.DataFrame) -> NDArray[np.float64]:
    """The model's probabilities for the test flights, in their order."""
    return predict_proba(model, test_set.drop(columns=[TARGET]))


def test_field_and_row_order_do_not_matter(
    model: Pipeline, test_set: pd.DataFrame, proba: NDArray[np.float64]
) -> None:
    """The same flights with their fields in reverse order and the rows shuffled get the same
    probabilities, each its own."""
    records = test_set.drop(columns=[TARGET])
    order = np.random.default_rng(0).permutation(len(records))[:5000]
    shuffled = records.iloc[order][list(reversed(records.columns))]
    np.testing.assert_array_equal(predict_proba(model, shuffled), proba[order])


def test_the_tail_numbers_case_does_not_matter(model: Pipeline, test_set: pd.DataFrame) -> None:
    """Flights sent through the API's contract with their tail numbers in lower case get the
    probabilities of the same flights in upper case (the aircraft's year, seats and engines)."""
    frame = test_set.drop(columns=[TARGET]).head(400)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    upper = [Flight.model_validate(r).model_dump() for r in rows]
    lower = [
        Flight.model_validate(r | {"tailnum": (r["tailnum"] or "").lower() or None}).model_dump()
        for r in rows
    ]
    assert sum(r["tailnum"] is not None for r in rows) > 300  # noqa: PLR2004 - most have a tail
    assert any(r["tailnum"] != (r["tailnum"] or "").lower() for r in rows if r["tailnum"])
    predictor = Predictor(model)
    np.testing.assert_array_equal(
        predictor.predict_records(lower), predictor.predict_records(upper)
    )
    np.testing.assert_allclose(
        predictor.predict_records(upper), predict_proba(model, frame), atol=1e-9
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"precip": 0.5, "precip_3h": 1.0}, id="rain"),
        pytest.param({"origin_deps_hour": 10.0}, id="congestion"),
    ],
)
def test_worse_conditions_never_lower_the_mean_probability(
    model: Pipeline,
    test_set: pd.DataFrame,
    proba: NDArray[np.float64],
    change: dict[str, float],
) -> None:
    """More rain at the origin (0.5 in more this hour, 1 in more over the last four) or ten more
    departures scheduled at the origin in the flight's hour does not lower the mean probability
    over the test flights."""
    records = test_set.drop(columns=[TARGET])
    worse = records.assign(**{name: records[name] + step for name, step in change.items()})
    assert predict_proba(model, worse).mean() >= proba.mean()


def test_routes_that_are_late_more_often_get_higher_probabilities(
    test_set: pd.DataFrame, proba: NDArray[np.float64]
) -> None:
    """Among the routes with at least MIN_FLIGHTS test flights, the ten with the highest
    observed delay rate get a higher mean probability than the ten with the lowest, and over
    these twenty the route's mean probability ranks with its observed rate (Spearman > 0.5)."""
    routes = (
        test_set.assign(route=test_set["origin"] + "-" + test_set["dest"], proba=proba)
        .groupby("route")
        .agg(flights=(TARGET, "size"), rate=(TARGET, "mean"), proba=("proba", "mean"))
    )
    routes = routes[routes["flights"] >= MIN_FLIGHTS].sort_values("rate")
    assert len(routes) >= 2 * EXTREMES, f"only {len(routes)} routes with {MIN_FLIGHTS}+ flights"
    low, high = routes.head(EXTREMES), routes.tail(EXTREMES)
    assert high["proba"].mean() > low["proba"].mean()
    ends = pd.concat([low, high])
    spearman = ends["proba"].rank().corr(ends["rate"].rank())  # Pearson of the ranks
    assert spearman > 0.5, f"Spearman {spearman:.2f}"
