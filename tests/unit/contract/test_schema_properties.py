"""Property tests (hypothesis) of the request model and the prediction path.

Flights are generated from the ``Flight`` contract itself (bounds read from its field metadata,
codes from its patterns), so the strategy follows the contract when it changes. The models are
small real Pipelines fitted on ``conftest.make_records``: both candidates, scored through
``Predictor`` (the service's path) and checked against ``predict_proba`` (the reference).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import annotated_types
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.pipeline import Pipeline

from conftest import PLANES, make_records
from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import RECORD_COLUMNS, TARGET, Flight
from flightdelay.core.params import HGBParams, LogRegParams
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba, records_frame

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
#: codes the models were fitted on, mixed with any code the contract's pattern allows (unknown
#: codes are valid requests for the model: the service rejects them, the Pipeline treats as missing)
KNOWN = {"carrier": ["UA", "AA", "B6"], "origin": ["EWR", "JFK", "LGA"], "dest": ["ORD", "LAX"]}


def _bounds(name: str) -> tuple[float | None, float | None, bool]:
    """(low, high, low is exclusive) of a numeric ``Flight`` field, from its constraints."""
    lo: float | None = None
    hi: float | None = None
    exclusive = False
    for meta in Flight.model_fields[name].metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = float(meta.ge)  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Gt):
            lo, exclusive = float(meta.gt), True  # type: ignore[arg-type]
        elif isinstance(meta, annotated_types.Le):
            hi = float(meta.le)  # type: ignore[arg-type]
    return lo, hi, exclusive


def _number(name: str) -> st.SearchStrategy[float]:
    lo, hi, exclusive = _bounds(name)
    return st.floats(lo, hi, exclude_min=exclusive, allow_nan=False, allow_infinity=False)


def _code(name: str, length: int) -> st.SearchStrategy[str]:
    pattern = st.from_regex(rf"[A-Z0-9]{{{length}}}", fullmatch=True)
    return st.sampled_from(KNOWN[name]) | pattern


HHMM = st.builds(lambda h, m: h * 100 + m, st.integers(0, 23), st.integers(0, 59)) | st.just(2400)
DATES = st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31))
OPTIONAL = [n for n in RECORD_COLUMNS if not Flight.model_fields[n].is_required()]


@st.composite
def flights(draw: st.DrawFn) -> Flight:
    """Any flight the contract accepts: a real date, HHMM times, codes, optional fields unset,
    null or anywhere within their bounds."""
    day = draw(DATES)
    fields: dict[str, Any] = {
        "year": day.year,
        "month": day.month,
        "day": day.day,
        "sched_dep_time": draw(HHMM),
        "sched_arr_time": draw(HHMM),
        "carrier": draw(_code("carrier", 2)),
        "origin": draw(_code("origin", 3)),
        "dest": draw(_code("dest", 3)),
        "distance": draw(_number("distance")),
    }
    for name in OPTIONAL:
        if name == "tailnum":
            value = draw(st.none() | st.sampled_from(["N1", "N2", "N3", "N99999"]))
        else:
            value = draw(st.none() | _number(name))
        if value is not None or draw(st.booleans()):
            fields[name] = value
    return Flight.model_validate(fields)


def _fit(name: str, params: object) -> Pipeline:
    train = make_records(1200, seed=5)
    return build(name, params, 7, PLANES).fit(train.drop(columns=[TARGET]), train[TARGET])


@pytest.fixture(scope="module", params=["hgb", "logreg"])
def predictor(request: pytest.FixtureRequest) -> Predictor:
    params = {"hgb": HGBParams(max_iter=15, min_samples_leaf=5), "logreg": LogRegParams()}
    return Predictor(_fit(request.param, params[request.param]))


@PROPERTY
@given(flight=flights())
def test_any_valid_flight_gets_a_probability_in_0_1(predictor: Predictor, flight: Flight) -> None:
    record = flight.model_dump()
    (fast,) = predictor.predict_records([record])
    (reference,) = predict_proba(predictor.model, records_frame([record]))
    assert math.isfinite(fast)
    assert 0.0 <= fast <= 1.0
    assert fast == pytest.approx(reference, abs=1e-6)


@PROPERTY
@given(flight=flights(), order=st.randoms(use_true_random=False))
def test_field_order_does_not_change_the_probability(
    predictor: Predictor, flight: Flight, order: Any
) -> None:
    record = flight.model_dump()
    keys = list(record)
    order.shuffle(keys)
    shuffled = {k: record[k] for k in keys}
    assert Flight.model_validate(shuffled) == flight
    reparsed = Flight.model_validate_json(json.dumps(shuffled)).model_dump()
    got = predictor.predict_records([shuffled, reparsed])
    assert got.tolist() == predictor.predict_records([record, record]).tolist()


@PROPERTY
@given(
    flight=flights(),
    others=st.lists(flights(), min_size=1, max_size=40),
    position=st.integers(min_value=0),
)
def test_batch_composition_does_not_change_a_flights_probability(
    predictor: Predictor, flight: Flight, others: list[Flight], position: int
) -> None:
    """Alone (the small-input path) or anywhere in a batch (the vectorised path): one answer."""
    (alone,) = predictor.predict_records([flight.model_dump()])
    batch = [f.model_dump() for f in others]
    at = position % (len(batch) + 1)
    batch.insert(at, flight.model_dump())
    in_batch = predictor.predict_records(batch)
    assert in_batch.shape == (len(batch),)
    assert in_batch[at] == pytest.approx(alone, abs=1e-9)
    assert np.all((in_batch >= 0) & (in_batch <= 1))


@PROPERTY
@given(flight=flights())
def test_json_round_trip_keeps_the_flight(flight: Flight) -> None:
    assert Flight.model_validate_json(flight.model_dump_json()) == flight


@PROPERTY
@given(flight=flights(), minutes=st.integers(60, 99))
def test_minutes_of_60_or_more_are_rejected_naming_the_field(flight: Flight, minutes: int) -> None:
    bad = {**flight.model_dump(), "sched_dep_time": 1200 + minutes}
    with pytest.raises(ValidationError, match=r"sched_dep_time: minutes must be below 60"):
        Flight.model_validate(bad)


@PROPERTY
@given(flight=flights(), name=st.sampled_from(["distance", "temp", "pressure", "visib"]))
def test_out_of_bounds_numbers_are_rejected_naming_the_field(flight: Flight, name: str) -> None:
    _, hi, _ = _bounds(name)
    assert hi is not None
    with pytest.raises(ValidationError, match=rf"{name}\n\s+Input should be less than or equal"):
        Flight.model_validate({**flight.model_dump(), name: hi + 1})


@PROPERTY
@given(flight=flights(), field=st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_unknown_fields_are_rejected_naming_them(flight: Flight, field: str) -> None:
    assume(field not in RECORD_COLUMNS)  # a known field is no example: hypothesis draws another
    with pytest.raises(ValidationError, match=rf"{field}\n\s+Extra inputs are not permitted"):
        Flight.model_validate({**flight.model_dump(), field: 1})
