import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import TARGET, record_schema
from flightdelay.core.params import HGBParams, LogRegParams
from flightdelay.model.candidates import CATEGORICAL_IDX, FEATURES, FlightFeatures, build


def _fitted() -> FlightFeatures:
    return FlightFeatures(PLANES).fit(make_records(50).drop(columns=[TARGET]))


def _row(**overrides: object) -> dict[str, object]:
    row = make_records(1).drop(columns=[TARGET]).iloc[0].to_dict()
    row.update(overrides)
    return row


def _column(matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, FEATURES.index(name)]


def test_calendar_and_clock_features() -> None:
    # 2013-11-28 was Thanksgiving (a Thursday); 2013-12-02 a Monday four days after it
    thanksgiving = _row(month=11, day=28, sched_dep_time=1730, sched_arr_time=2025)
    monday = _row(month=12, day=2, sched_dep_time=2350, sched_arr_time=115)
    rows = pd.DataFrame([thanksgiving, monday])
    x = _fitted().transform(rows)
    assert _column(x, "day_of_week").tolist() == [3, 0]
    assert _column(x, "holiday_days").tolist() == [0, 4]
    assert _column(x, "dep_min").tolist() == [17 * 60 + 30, 23 * 60 + 50]
    assert _column(x, "block_min").tolist() == [175, 85]  # overnight arrival wraps


def test_unknown_categories_and_tails_become_missing() -> None:
    x = _fitted().transform(pd.DataFrame([_row(dest="ZZZ", tailnum="N999"), _row(tailnum="N1")]))
    assert np.isnan(_column(x, "dest")[0])
    assert np.isnan(_column(x, "seats")[0])
    assert _column(x, "seats")[1] == 55
    assert _column(x, "plane_year")[1] == 1999


def test_mapping_input_equals_frame_input() -> None:
    features = _fitted()
    frame = make_records(30, seed=5).drop(columns=[TARGET])
    as_lists = {col: frame[col].tolist() for col in frame.columns}
    np.testing.assert_array_equal(features.transform(frame), features.transform(as_lists))


def test_missing_weather_columns_are_nan() -> None:
    features = _fitted()
    frame = make_records(3).drop(columns=[TARGET, "temp", "visib"])
    x = features.transform(frame)
    assert np.isnan(_column(x, "temp")).all()
    assert np.isnan(_column(x, "visib")).all()


def test_categorical_codes_fit_in_hgb_bins() -> None:
    x = _fitted().transform(make_records(50).drop(columns=[TARGET]))
    codes = x[:, CATEGORICAL_IDX]
    assert np.nanmin(codes) >= 0
    assert np.nanmax(codes) < 255


@pytest.mark.parametrize(
    ("name", "params"), [("hgb", HGBParams(max_iter=20)), ("logreg", LogRegParams())]
)
def test_candidates_learn_the_signal(name: str, params: object) -> None:
    data = make_records(3000, seed=1)
    model = build(name, params, seed=0, planes=PLANES).fit(
        data.drop(columns=[TARGET]), data[TARGET]
    )
    test = make_records(1000, seed=2)
    proba = model.predict_proba(test.drop(columns=[TARGET]))[:, 1]
    rainy = test["precip"] > 0.2
    assert proba[rainy.to_numpy()].mean() > proba[~rainy.to_numpy()].mean() + 0.1


def test_same_seed_same_model() -> None:
    data = make_records(500, seed=1)
    x, y = data.drop(columns=[TARGET]), data[TARGET]
    first = build("hgb", HGBParams(max_iter=10), 7, PLANES).fit(x, y).predict_proba(x)
    second = build("hgb", HGBParams(max_iter=10), 7, PLANES).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(first, second)


def test_unknown_candidate() -> None:
    with pytest.raises(KeyError, match="unknown candidate 'svm'; known: hgb, logreg"):
        build("svm", None, 0, None)


def test_synthetic_records_obey_the_contract() -> None:
    record_schema().validate(make_records(200))
