import numpy as np
import pandas as pd
import pytest

from flightdelay.contract.schema import RECORD_COLUMNS, TARGET
from flightdelay.core.errors import StageError
from flightdelay.core.params import FeaturesParams, SplitParams
from flightdelay.pipeline.features import build_records, label, split, weather_windows

LEAKY = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}


def _flights() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "year": 2013, "month": [1, 1, 10, 11], "day": 1,
            "dep_time": [605.0, np.nan, 700.0, 900.0], "sched_dep_time": [600, 600, 700, 900],
            "dep_delay": [5.0, np.nan, 0.0, 0.0], "arr_time": [820.0, np.nan, 900.0, 1130.0],
            "sched_arr_time": [800, 800, 900, 1100], "arr_delay": [20.0, np.nan, 0.0, 30.0],
            "carrier": "UA", "flight": 1, "tailnum": "N1", "origin": "EWR", "dest": "ORD",
            "air_time": 100.0, "distance": 719.0, "hour": [6, 6, 7, 9], "minute": 0,
        }
    )  # fmt: skip


def _weather() -> pd.DataFrame:
    hours = pd.date_range("2013-01-01 03:00", periods=5, freq="h")
    rows = pd.DataFrame(
        {"origin": "EWR", "year": 2013, "month": 1, "day": 1, "hour": hours.hour,
         "temp": 30.0, "dewp": 20.0, "humid": 60.0, "wind_dir": 90.0,
         "wind_speed": [5.0, 5.0, 1048.0, 5.0, 5.0],
         "wind_gust": [np.nan, 20.0, np.nan, 10.0, np.nan],
         "precip": [0.0, 0.1, 0.2, 0.0, 0.3], "pressure": [1010.0, 1011.0, 1012.0, 1014.0, 1015.0],
         "visib": [10.0, 2.0, 10.0, 10.0, 10.0]}
    )  # fmt: skip
    return pd.concat([rows, rows.iloc[[0]]], ignore_index=True)  # a duplicated hour


def test_weather_windows_summarise_the_past_three_hours() -> None:
    w = weather_windows(_weather()).set_index("hour")
    assert len(w) == 5  # duplicate hour dropped
    assert w.loc[6, "precip_3h"] == pytest.approx(0.3)  # hours 3, 4, 5, 6
    assert w.loc[7, "precip_3h"] == pytest.approx(0.6)  # hours 4..7
    assert w.loc[6, "visib_min_3h"] == 2.0
    assert w.loc[6, "gust_max_3h"] == 20.0
    assert w.loc[6, "pressure_chg_3h"] == pytest.approx(4.0)  # 1014 - 1010
    assert np.isnan(w.loc[4, "pressure_chg_3h"])  # no reading three hours earlier
    assert np.isnan(w.loc[5, "wind_speed"])  # the 1048 mph sensor error is dropped


def test_label_drop_and_delayed() -> None:
    dropped = label(_flights(), FeaturesParams(cancelled="drop"))
    assert dropped[TARGET].tolist() == [True, False, True]
    kept = label(_flights(), FeaturesParams(cancelled="delayed"))
    assert kept[TARGET].tolist() == [True, True, False, True]
    strict = label(_flights(), FeaturesParams(delay_threshold_min=25))
    assert strict[TARGET].tolist() == [False, False, True]


def test_records_have_no_leakage_and_carry_weather() -> None:
    records = build_records(_flights(), _weather(), FeaturesParams())
    assert list(records.columns) == [*RECORD_COLUMNS, TARGET]
    assert not LEAKY & set(records.columns)
    assert records.loc[0, "precip_3h"] == pytest.approx(0.3)  # 06:00 departure
    assert records["temp"].isna().tolist() == [False, True, True]  # no weather for Oct/Nov


def test_records_contract_violation_is_reported() -> None:
    flights = _flights().assign(distance=-5.0)
    with pytest.raises(StageError, match=r"column 'distance'.*fail greater_than\(0\)"):
        build_records(flights, _weather(), FeaturesParams())


def test_time_split_by_month() -> None:
    records = pd.DataFrame({"month": [1, 9, 10, 11, 12], TARGET: False})
    parts = split(records, SplitParams(), seed=0)
    assert [parts[p]["month"].tolist() for p in ("train", "valid", "test")] == [
        [1, 9],
        [10],
        [11, 12],
    ]


def test_random_split_is_seeded_and_complete() -> None:
    """Every row lands in exactly one part, unchanged; the parts are about the fractions asked
    for; the same seed gives the same split and another seed another one."""
    records = pd.DataFrame({"month": 1, "i": range(1000), TARGET: False})
    params = SplitParams(method="random", valid_frac=0.1, test_frac=0.2)
    parts = split(records, params, seed=3)
    again = split(records, params, seed=3)
    assert sum(len(p) for p in parts.values()) == 1000
    assert 150 < len(parts["test"]) < 250
    assert 50 < len(parts["valid"]) < 150
    ids = {name: part["i"].tolist() for name, part in parts.items()}
    assert sorted(ids["train"] + ids["valid"] + ids["test"]) == list(range(1000))  # disjoint
    for name, part in parts.items():
        expected = records.iloc[ids[name]].reset_index(drop=True)  # row i is at position i
        pd.testing.assert_frame_equal(part, expected)
        pd.testing.assert_frame_equal(part, again[name])
    other = split(records, params, seed=4)
    for name in parts:
        assert set(other[name]["i"]) != set(ids[name]), name


def test_split_refuses_an_empty_part() -> None:
    records = pd.DataFrame({"month": [1, 2], TARGET: False})
    with pytest.raises(StageError, match="no rows in valid, test"):
        split(records, SplitParams(), seed=0)
