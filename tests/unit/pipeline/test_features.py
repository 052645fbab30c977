import numpy as np
import pandas as pd
import pytest

from flightdelay.contract.schema import KNOWN, RECORD_COLUMNS, TARGET
from flightdelay.core.errors import StageError
from flightdelay.core.params import FeaturesParams, SplitParams
from flightdelay.pipeline.features import (
    build_records,
    context,
    known_context,
    label,
    schedule_context,
    split,
    weather_windows,
)

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


def _day_flights(rows: list[tuple[object, ...]]) -> pd.DataFrame:
    """Flights of 2013-01 from (day, origin, sched_dep_time, carrier, tailnum, dep_delay)."""
    frame = pd.DataFrame(
        rows, columns=["day", "origin", "sched_dep_time", "carrier", "tailnum", "dep_delay"]
    )
    return frame.assign(year=2013, month=1, dep_delay=frame["dep_delay"].astype(float))


def _schedule() -> pd.DataFrame:
    return _day_flights(
        [
            (1, "EWR", 700, "UA", "N1", 0),  # 0: N1's second leg of day 1
            (1, "EWR", 600, "UA", "N1", 0),  # 1: N1's first leg
            (1, "EWR", 630, "UA", "N2", 0),
            (1, "EWR", 659, "AA", "N3", np.nan),  # 3: cancelled, still on the schedule
            (1, "EWR", 559, "AA", None, 0),  # 4: hour 5; no tail number
            (1, "JFK", 615, "UA", "N5", 0),  # another origin
            (1, "LGA", 900, "UA", "N1", 0),  # 6: N1's third leg, from LGA
            (2, "EWR", 615, "UA", "N1", 0),  # another day
        ]
    )


def test_schedule_context_counts_the_origins_hours() -> None:
    """Departures scheduled at the origin that day in the flight's hour, the hour before and the
    hour after (a cancelled flight counts; other origins and days do not; no hour wraps), and the
    carrier's share of the flight's hour."""
    out = schedule_context(_schedule(), FeaturesParams())
    assert out["origin_deps_hour"].tolist() == [1, 3, 3, 3, 1, 1, 1, 1]
    assert out["origin_deps_prev_hour"].tolist() == [3, 1, 1, 1, 0, 0, 0, 0]
    assert out["origin_deps_next_hour"].tolist() == [0, 1, 1, 1, 3, 0, 0, 0]
    assert out["carrier_share_hour"].tolist() == pytest.approx([1, 2 / 3, 2 / 3, 1 / 3, 1, 1, 1, 1])


def test_schedule_context_orders_the_aircrafts_day() -> None:
    """Legs are counted in scheduled order whatever the row order, per tail number and day
    (origins mixed); the turnaround is the minutes since the previous scheduled departure;
    flights without a tail number get neither."""
    out = schedule_context(_schedule(), FeaturesParams())
    nan = np.nan
    np.testing.assert_array_equal(out["tail_leg"], [1, 0, 0, 0, nan, 0, 2, 0])
    np.testing.assert_array_equal(out["turnaround_min"], [60, nan, nan, nan, nan, nan, 120, nan])


def _operations() -> pd.DataFrame:
    return _day_flights(
        [
            (1, "EWR", 940, "UA", "T1", 0),  # 0: T1's third leg: the 08:30 left 08:35 > 07:40
            (1, "EWR", 600, "UA", "T1", 10),  # 1: T1's first leg, left 06:10
            (1, "EWR", 830, "UA", "T1", 5),  # 2: 06:10 <= cutoff 06:30: known
            (1, "EWR", 600, "UA", "T2", -3),
            (1, "EWR", 757, "UA", "T2", 0),  # 4: previous leg left 05:57, exactly at the cutoff
            (1, "EWR", 600, "UA", "T3", 1),
            (1, "EWR", 800, "UA", "T3", 0),  # 6: previous left 06:01 > cutoff 06:00
            (1, "EWR", 500, "UA", "T4", np.nan),  # 7: cancelled
            (1, "EWR", 900, "UA", "T4", 0),  # 8: its previous leg never left
            (2, "EWR", 900, "UA", "T1", 0),  # 9: T1 on another day: first leg
            (1, "LGA", 1200, "B6", None, 0),  # 10: Z, cutoff 10:00, window (08:00, 10:00]
            (1, "LGA", 800, "B6", None, 0),  # left 08:00: out (the window's start is open)
            (1, "LGA", 800, "B6", None, 1),  # left 08:01: in
            (1, "LGA", 930, "B6", None, 30),  # left 10:00: in (the cutoff is included)
            (1, "LGA", 930, "B6", None, 31),  # left 10:01: out
            (1, "LGA", 1000, "B6", None, np.nan),  # cancelled: never left
            (1, "LGA", 900, "B6", None, -10),  # left 08:50: in
            (1, "LGA", 1010, "B6", None, -15),  # left 09:55, scheduled after the cutoff: in
            (1, "JFK", 900, "B6", None, 0),  # another origin
            (2, "LGA", 900, "B6", None, 0),  # another day
        ]
    )


def test_known_context_previous_leg_only_when_known_in_time() -> None:
    """The previous leg's departure delay is given when that leg left (scheduled time + delay)
    at or before this flight's scheduled departure minus ``hours``; NaN when it left later, was
    cancelled, or there is no earlier leg that day."""
    out = known_context(_operations(), hours=2.0)
    nan = np.nan
    expected = [nan, nan, 10, nan, -3, nan, nan, nan, nan, nan, *[nan] * 10]
    np.testing.assert_array_equal(out["prev_leg_dep_delay"], expected)
    later = known_context(_operations(), hours=1.0)  # T1's 08:35 departure is known by 08:00
    assert later.loc[0, "prev_leg_dep_delay"] == 5


@pytest.mark.parametrize(
    ("hours", "count", "mean"),
    [(2.0, 4, (1 + 30 - 10 - 15) / 4), (2.5, 3, (0 + 1 - 10) / 3)],
)
def test_known_context_origin_window(hours: float, count: int, mean: float) -> None:
    """The origin's departures that day that left in (cutoff - 120 min, cutoff], cutoff = the
    scheduled departure - ``hours``: their count and mean departure delay (cancelled flights,
    other origins and other days excluded); an empty window counts 0 with no mean."""
    out = known_context(_operations(), hours=hours)
    assert out.loc[10, "origin_recent_deps"] == count
    assert out.loc[10, "origin_recent_dep_delay"] == pytest.approx(mean)
    assert out.loc[11, "origin_recent_deps"] == 0  # LGA 08:00, cutoff 06:00 or 05:30
    assert np.isnan(out.loc[11, "origin_recent_dep_delay"])


@pytest.mark.parametrize(
    ("switch", "columns"),
    [
        ({"congestion": False}, KNOWN[:4]),
        ({"aircraft_day": False}, ("tail_leg", "turnaround_min")),
        ({"known_hours": None}, KNOWN[6:]),
    ],
)
def test_switched_off_context_is_missing(
    switch: dict[str, object], columns: tuple[str, ...]
) -> None:
    """A switched-off group's columns are all NaN and the other groups keep their values."""
    flights = _operations()
    on, off = context(flights, FeaturesParams()), context(flights, FeaturesParams(**switch))
    assert list(off.columns) == list(KNOWN)
    assert off[list(columns)].isna().all().all()
    assert on[list(columns)].notna().any().all()
    others = [c for c in KNOWN if c not in columns]
    pd.testing.assert_frame_equal(off[others], on[others])


def test_records_count_cancelled_flights_on_the_schedule() -> None:
    """build_records adds the context from the whole table before cancelled flights are dropped:
    the 06:00 flight on 1 January shares its hour with a cancelled one."""
    records = build_records(_flights(), _weather(), FeaturesParams(cancelled="drop"))
    assert records["origin_deps_hour"].tolist() == [2, 1, 1]
    assert records["carrier_share_hour"].tolist() == [1, 1, 1]
