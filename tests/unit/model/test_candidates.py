import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import CATEGORICAL, TARGET, record_schema
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


#: HistGradientBoostingClassifier's bins for non-missing values (its ``max_bins``): a
#: categorical feature's codes must lie in 0 .. HGB_BINS - 1
HGB_BINS = 255


def _with_destinations(n: int) -> pd.DataFrame:
    """Records flying to ``n`` distinct destinations, each one twice."""
    records = make_records(2 * n, seed=4)
    return records.assign(dest=[f"D{i % n:03d}" for i in range(2 * n)])


@pytest.mark.parametrize("destinations", [HGB_BINS, HGB_BINS + 45])
def test_categorical_codes_fit_in_hgb_bins(destinations: int) -> None:
    """Codes are 0 .. n-1 for the n values fit saw, so a column with as many values as HGB has
    bins uses every bin and fits; one with more is refused at fit, naming the column's index and
    its cardinality, never binned wrong in silence."""
    records = _with_destinations(destinations)
    x_records, y = records.drop(columns=[TARGET]), records[TARGET]
    codes = FlightFeatures(PLANES).fit(x_records).transform(x_records)[:, CATEGORICAL_IDX]
    assert not np.isnan(codes).any()
    for i, col in enumerate(CATEGORICAL):
        assert sorted(set(codes[:, i].tolist())) == list(range(records[col].nunique())), col
    assert codes[:, CATEGORICAL.index("dest")].max() == destinations - 1
    hgb = build("hgb", HGBParams(max_iter=2, min_samples_leaf=5), 0, PLANES)
    if destinations <= HGB_BINS:
        assert hgb.fit(x_records, y).predict_proba(x_records).shape == (len(records), 2)
    else:
        at = CATEGORICAL.index("dest")  # HGB counts its categorical features
        with pytest.raises(ValueError, match=rf"index {at} .* <= {HGB_BINS} .* of {destinations}"):
            hgb.fit(x_records, y)


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


def _seeded_hgb(seed: int, x: pd.DataFrame, y: pd.Series) -> np.ndarray:
    """The hgb candidate with the estimator's own randomness switched on (early stopping on a
    random validation fraction, a random half of the features per split), fitted; its
    probabilities on ``x``."""
    model = build("hgb", HGBParams(max_iter=10, min_samples_leaf=20), seed, PLANES)
    model.set_params(
        classifier__early_stopping=True,
        classifier__validation_fraction=0.3,
        classifier__max_features=0.5,
    )
    proba: np.ndarray = model.fit(x, y).predict_proba(x)
    return proba


def test_same_seed_same_model() -> None:
    """The seed ``build`` gets is the estimator's: where it draws at random, the same seed gives
    the same model and another seed another one."""
    data = make_records(500, seed=1)
    x, y = data.drop(columns=[TARGET]), data[TARGET]
    first = build("hgb", HGBParams(max_iter=10), 7, PLANES).fit(x, y).predict_proba(x)
    second = build("hgb", HGBParams(max_iter=10), 7, PLANES).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(first, second)
    seeded = _seeded_hgb(7, x, y)
    np.testing.assert_array_equal(seeded, _seeded_hgb(7, x, y))
    assert np.abs(seeded - _seeded_hgb(8, x, y)).max() > 1e-3


def test_unknown_candidate() -> None:
    with pytest.raises(KeyError, match="unknown candidate 'svm'; known: hgb, logreg"):
        build("svm", None, 0, None)


def test_synthetic_records_obey_the_contract() -> None:
    record_schema().validate(make_records(200))
