"""Stage 2, features: flight records (schedule x weather at the origin), the target and the split.

Only what is known before departure survives: the actual departure and arrival times, their
delays and the air time are dropped. Weather comes from the origin's hourly observations at the
scheduled hour and the three hours before it. Aircraft attributes are looked up inside the
model (``FlightFeatures``) from the planes table this stage also writes, so the API needs only
a tail number.

From the whole schedule (cancelled flights included: the schedule is published in advance) come
the origin's scheduled departures around the hour and the aircraft's day (``schedule_context``).
One rule admits what happened earlier that day (``known_context``): an actual departure may be
used only when it took place at least ``features.known_hours`` before this flight's scheduled
departure, the time from which a prediction can then be made. It gives the previous leg's
departure delay and the origin's departures in the two hours before that cutoff.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from flightdelay.contract.schema import (
    KNOWN,
    RECORD_COLUMNS,
    TARGET,
    record_schema,
    summarise_failures,
)
from flightdelay.core.errors import StageError
from flightdelay.core.io import read_parquet, run_main, write_parquet
from flightdelay.core.params import FeaturesParams, SplitParams, load_params

log = logging.getLogger(__name__)

KEY = ["origin", "year", "month", "day", "hour"]
DAY = ["year", "month", "day"]
RECENT_MIN = 120  # the origin's recent departures: the two hours up to the cutoff
SPLITS = ("train", "valid", "test")
MAX_WIND_MPH = 150.0  # the 2013 data holds one 1048 mph reading: a sensor error, not weather


def weather_windows(weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per origin plus rolling summaries of the current and three previous hours."""
    w = weather.drop_duplicates(KEY).copy()
    w.loc[w["wind_speed"] > MAX_WIND_MPH, "wind_speed"] = np.nan
    w["ts"] = pd.to_datetime(w[["year", "month", "day", "hour"]])
    w = w.sort_values(["origin", "ts"]).reset_index(drop=True)
    rolled = (
        w.set_index("ts")
        .groupby("origin")[["precip", "visib", "wind_gust"]]
        .rolling("4h")
        .agg({"precip": "sum", "visib": "min", "wind_gust": "max"})
        .reset_index(drop=True)
    )
    w["precip_3h"] = rolled["precip"].to_numpy()
    w["visib_min_3h"] = rolled["visib"].to_numpy()
    w["gust_max_3h"] = rolled["wind_gust"].to_numpy()
    earlier = w[["origin", "ts", "pressure"]].assign(ts=w["ts"] + pd.Timedelta(hours=3))
    w = w.merge(earlier, on=["origin", "ts"], how="left", suffixes=("", "_3h_ago"))
    w["pressure_chg_3h"] = w["pressure"] - w["pressure_3h_ago"]
    return w.drop(columns=["ts", "pressure_3h_ago"])


def _minutes(hhmm: pd.Series) -> pd.Series:
    return (hhmm // 100) * 60 + hhmm % 100


def schedule_context(flights: pd.DataFrame, params: FeaturesParams) -> pd.DataFrame:
    """Congestion and the aircraft's day from the scheduled times alone (NaN when switched off)."""
    columns = ["origin_deps_hour", "origin_deps_prev_hour", "origin_deps_next_hour",
               "carrier_share_hour", "tail_leg", "turnaround_min"]  # fmt: skip
    out = pd.DataFrame(np.nan, index=flights.index, columns=columns)
    hour = flights["sched_dep_time"] // 100 % 24
    if params.congestion:
        keys = [*DAY, "origin"]
        per_hour = flights.assign(hour=hour).groupby([*keys, "hour"]).size()
        for column, shift in (("origin_deps_hour", 0), ("origin_deps_prev_hour", -1),
                              ("origin_deps_next_hour", 1)):  # fmt: skip
            index = pd.MultiIndex.from_arrays([*(flights[k] for k in keys), hour + shift])
            out[column] = per_hour.reindex(index, fill_value=0).to_numpy(dtype=np.float64)
        by_carrier = flights.assign(hour=hour).groupby([*keys, "carrier", "hour"])["hour"]
        out["carrier_share_hour"] = by_carrier.transform("size") / out["origin_deps_hour"]
    if params.aircraft_day:
        dep = _minutes(flights["sched_dep_time"])
        legs = flights.assign(dep=dep).loc[flights["tailnum"].notna()]
        legs = legs.sort_values([*DAY, "tailnum", "dep"], kind="stable")
        day = legs.groupby([*DAY, "tailnum"], sort=False)["dep"]
        out.loc[legs.index, "tail_leg"] = day.cumcount().to_numpy(dtype=np.float64)
        out.loc[legs.index, "turnaround_min"] = (legs["dep"] - day.shift(1)).to_numpy()
    return out


def known_context(flights: pd.DataFrame, hours: float | None) -> pd.DataFrame:
    """The previous leg's departure delay and the origin's recent departures, as known
    ``hours`` before each scheduled departure (all NaN when ``hours`` is None)."""
    columns = ["prev_leg_dep_delay", "origin_recent_deps", "origin_recent_dep_delay"]
    out = pd.DataFrame(np.nan, index=flights.index, columns=columns)
    if hours is None:
        return out
    dep = _minutes(flights["sched_dep_time"]).astype(np.float64)
    left = dep + flights["dep_delay"]  # minutes after the scheduled day's midnight; NaN: never
    cutoff = dep - 60 * hours
    frame = flights.assign(dep=dep, left=left)
    legs = frame.loc[flights["tailnum"].notna()].sort_values(
        [*DAY, "tailnum", "dep"], kind="stable"
    )
    day = legs.groupby([*DAY, "tailnum"], sort=False)
    known = day["left"].shift(1) <= cutoff.loc[legs.index]  # NaN (no leg, cancelled) is False
    out.loc[legs.index, "prev_leg_dep_delay"] = day["dep_delay"].shift(1).where(known).to_numpy()
    # departures that left the origin in (cutoff - RECENT_MIN, cutoff] of the same day: one sorted
    # array of (origin-day, time left) answers every flight's window with two searches
    group = frame.groupby([*DAY, "origin"], sort=False).ngroup().to_numpy(dtype=np.float64)
    span = 10_000.0  # wider than any time of a day (minutes, delays included)
    gone = np.isfinite(left.to_numpy())
    stamp = group[gone] * span + left.to_numpy()[gone]
    order = np.argsort(stamp, kind="stable")
    stamp, delays = stamp[order], flights["dep_delay"].to_numpy(dtype=np.float64)[gone][order]
    total = np.concatenate([[0.0], np.cumsum(delays)])
    end = group * span + cutoff.to_numpy()
    hi = np.searchsorted(stamp, end, side="right")
    lo = np.searchsorted(stamp, end - RECENT_MIN, side="right")
    count = (hi - lo).astype(np.float64)
    out["origin_recent_deps"] = count
    with np.errstate(invalid="ignore", divide="ignore"):
        out["origin_recent_dep_delay"] = np.where(
            count > 0, (total[hi] - total[lo]) / count, np.nan
        )
    return out


def context(flights: pd.DataFrame, params: FeaturesParams) -> pd.DataFrame:
    """Every ``KNOWN`` column of each flight, from the whole schedule (see the module docstring)."""
    parts = [schedule_context(flights, params), known_context(flights, params.known_hours)]
    return pd.concat(parts, axis=1)[list(KNOWN)]


def label(flights: pd.DataFrame, params: FeaturesParams) -> pd.DataFrame:
    """Add the target; flights with no arrival delay (cancelled or diverted) follow the param."""
    no_arrival = flights["arr_delay"].isna()
    flights = flights.loc[~no_arrival] if params.cancelled == "drop" else flights.copy()
    target = flights["arr_delay"] >= params.delay_threshold_min
    return flights.assign(**{TARGET: target | flights["arr_delay"].isna()})


def build_records(
    flights: pd.DataFrame, weather: pd.DataFrame, params: FeaturesParams
) -> pd.DataFrame:
    """Labelled flight records with exactly the contract's columns, validated."""
    flights = flights.reset_index(drop=True)
    flights = pd.concat([flights, context(flights, params)], axis=1)
    flights = label(flights, params).assign(hour=lambda f: f["sched_dep_time"] // 100 % 24)
    joined = flights.merge(weather_windows(weather), on=KEY, how="left", validate="many_to_one")
    records = joined[[*RECORD_COLUMNS, TARGET]].reset_index(drop=True)
    try:
        return record_schema().validate(records, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = "; ".join(summarise_failures(exc.failure_cases))
        raise StageError(f"flight records break the contract: {problems}") from exc


def split(records: pd.DataFrame, params: SplitParams, seed: int) -> dict[str, pd.DataFrame]:
    """Time split by month (default) or a seeded random split."""
    if params.method == "time":
        groups = (params.train_months, params.valid_months, params.test_months)
        masks = [records["month"].isin(months) for months in groups]
    else:
        draw = np.random.default_rng(seed).random(len(records))
        test = draw < params.test_frac
        valid = (draw >= params.test_frac) & (draw < params.test_frac + params.valid_frac)
        masks = [pd.Series(~(test | valid)), pd.Series(valid), pd.Series(test)]
    parts = {
        name: records.loc[mask.to_numpy()].reset_index(drop=True)
        for name, mask in zip(SPLITS, masks, strict=True)
    }
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise StageError(f"split leaves no rows in {', '.join(empty)}: check features.split")
    return parts


def planes_lookup(planes: pd.DataFrame) -> pd.DataFrame:
    """The aircraft attributes the model looks up by tail number."""
    return planes[["tailnum", "year", "seats", "engines"]].reset_index(drop=True)


def run(
    tables: dict[str, pd.DataFrame], params: FeaturesParams, seed: int
) -> dict[str, pd.DataFrame]:
    """Flight records split into train/valid/test, plus the planes lookup."""
    records = build_records(tables["flights"], tables["weather"], params)
    out = split(records, params.split, seed)
    out["planes"] = planes_lookup(tables["planes"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--in", dest="inp", required=True, help="directory of ingested tables")
    parser.add_argument("--out", required=True, help="directory for train/valid/test/planes")
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        tables = {
            t: read_parquet(Path(args.inp) / f"{t}.parquet")
            for t in ("flights", "weather", "planes")
        }
        outputs = run(tables, params.features, params.base.seed)
        for name, frame in outputs.items():
            write_parquet(frame, Path(args.out) / f"{name}.parquet")
            rate = f", {frame[TARGET].mean():.1%} delayed" if TARGET in frame else ""
            log.info("%-6s %7d rows%s", name, len(frame), rate)

    return run_main("features", body)


if __name__ == "__main__":
    raise SystemExit(main())
