"""Flight records -> the model's feature matrix, with the lookups ``FlightFeatures`` learned.

Plain numpy and Python, no scikit-learn or pandas: ``FlightFeatures.transform`` (training,
evaluation, the reference Pipeline) and the served ``runtime.ServingModel`` both run
``FeatureTable``, so the two cannot drift apart.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from flightdelay.contract.schema import CATEGORICAL, KNOWN, RECORD_COLUMNS

WEATHER = (
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
    "precip_3h", "visib_min_3h", "gust_max_3h", "pressure_chg_3h",
)  # fmt: skip
PLANE = ("plane_year", "seats", "engines")
SCHEDULE = ("dep_min", "arr_min", "block_min", "day_of_week", "holiday_days", "distance")
#: smoothed delay rates learned from the training rows, by the fields each is keyed on
HISTORY: dict[str, tuple[str, ...]] = {
    "route_rate": ("origin", "dest"),
    "carrier_origin_rate": ("carrier", "origin"),
    "dep_hour_rate": ("dep_hour",),
    "weekday_rate": ("day_of_week",),
}
_INT_KEYS = {"dep_hour_rate": 24, "weekday_rate": 7}  # how many values each integer key takes
PASSED = KNOWN + WEATHER  # record fields that are features as they are (None: missing)
NUMERIC = SCHEDULE + PASSED + PLANE + tuple(HISTORY)
FEATURES = NUMERIC + CATEGORICAL

Record = Mapping[str, Any]
Columns = Mapping[str, Any]
Matrix = NDArray[np.float64]
_EPOCH = dt.date(1970, 1, 1).toordinal()
_NO_PLANE = (math.nan, math.nan, math.nan)
_CODES = (*CATEGORICAL, "tailnum")
_NUMBERS = tuple(name for name in RECORD_COLUMNS if name not in _CODES)
_NUMBER_FIELDS = operator.itemgetter(*_NUMBERS)


def _minutes(hhmm: Any) -> Matrix:
    clock = np.asarray(hhmm, dtype=np.float64)
    minutes: Matrix = (clock // 100) * 60 + clock % 100
    return minutes


def _days(columns: Columns) -> NDArray[np.int64]:
    """Days since 1970-01-01 of each flight's scheduled date (a day past the month's end rolls
    over, as numpy's datetime64 does)."""
    years = np.asarray(columns["year"], dtype=np.int64) - 1970
    months = np.asarray(columns["month"], dtype=np.int64) - 1
    first = years.astype("datetime64[Y]").astype("datetime64[M]") + months
    dates = first.astype("datetime64[D]") + (np.asarray(columns["day"], dtype=np.int64) - 1)
    return dates.astype(np.int64)


def _clock(hhmm: Any) -> float:
    """``_minutes`` of one value, in plain Python."""
    clock = float(hhmm)
    return (clock // 100) * 60 + clock % 100


def _objects(values: Any) -> list[Any] | NDArray[np.object_]:
    """``values`` (a list, a numpy or pandas column) in a form fast to iterate in Python."""
    return values if isinstance(values, list) else np.asarray(values, dtype=object)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclass
class FeatureTable:
    """Flight records -> float matrix with the columns of ``FEATURES``.

    Attributes:
        categories: column -> value -> code (unseen values become NaN, i.e. missing).
        planes: tail number -> (year, seats, engines).
        holidays: US federal holidays as days since 1970-01-01, sorted.
        history: per ``HISTORY`` feature, key (``history_key``) -> smoothed delay rate; a key
            not in it gets ``prior``; a feature without a table is missing (NaN).
        prior: the training rows' delay rate.
        unused: features that were missing in every fitted row (a switched-off group): always
            0, so the models cannot split on them and ignore what a client sends.
    """

    categories: Mapping[str, Mapping[Any, int]]
    planes: Mapping[Any, tuple[float, ...]]
    holidays: NDArray[np.int64]
    history: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    prior: float = math.nan
    unused: tuple[str, ...] = ()
    _holiday_list: list[int] = field(init=False, repr=False)
    _unused_idx: list[int] = field(init=False, repr=False)
    _luts: dict[str, Matrix] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._holiday_list = self.holidays.tolist()
        self._unused_idx = [FEATURES.index(name) for name in self.unused]
        self._luts = {name: self._lut(name) for name in HISTORY if self.history.get(name)}

    def _lut(self, name: str) -> Matrix:
        """The rates of ``name`` as an array indexed by its fields: the category codes of both
        (the last row and column: unknown, so ``prior``) or the hour (0-23) or weekday (0-6)."""
        table, prior = self.history[name], self.prior
        if name in _INT_KEYS:
            return np.array([table.get(str(i), prior) for i in range(_INT_KEYS[name])])
        first, second = HISTORY[name]
        a, b = self.categories[first], self.categories[second]
        lut = np.full((len(a) + 1, len(b) + 1), prior)
        for va, ca in a.items():
            for vb, cb in b.items():
                lut[ca, cb] = table.get(f"{va}-{vb}", prior)
        return lut

    def _finish(self, out: Matrix) -> Matrix:
        if self._unused_idx:
            out[:, self._unused_idx] = 0.0
        return out

    def _pair_rates(self, name: str, codes: Mapping[str, Matrix]) -> Matrix:
        """``rates`` of a feature keyed on two categorical fields, from their codes (an unknown
        value makes an unseen key: ``prior``)."""
        first, second = HISTORY[name]
        if name not in self._luts:
            return np.full(len(codes[first]), np.nan)
        ia, ib = (
            np.nan_to_num(codes[f], nan=len(self.categories[f])).astype(np.intp)
            for f in (first, second)
        )
        rates: Matrix = self._luts[name][ia, ib]
        return rates

    def rates(self, name: str, keys: Sequence[str]) -> Matrix:
        """The rate of each key for the ``HISTORY`` feature ``name``."""
        table = self.history.get(name)
        if not table:
            return np.full(len(keys), np.nan)
        prior = self.prior
        return np.array([table.get(k, prior) for k in keys], dtype=np.float64).reshape(-1)

    def _rates_by_int(self, name: str, values: Matrix) -> Matrix:
        """``rates`` of small non-negative integer keys (hour, weekday), by a look-up array."""
        if name not in self._luts:
            return np.full(len(values), np.nan)
        rates: Matrix = self._luts[name][values.astype(np.intp)]
        return rates

    def history_keys(self, columns: Columns) -> dict[str, list[str]]:
        """The key of every row for each ``HISTORY`` feature (what ``FlightFeatures`` counts)."""
        derived = {
            "dep_hour": (np.asarray(columns["sched_dep_time"], dtype=np.int64) // 100 % 24),
            "day_of_week": (_days(columns) + 3) % 7,
        }
        keys = {}
        for name, fields in HISTORY.items():
            parts = [derived[f].tolist() if f in derived else list(columns[f]) for f in fields]
            keys[name] = ["-".join(map(str, p)) for p in zip(*parts, strict=True)]
        return keys

    def transform(self, columns: Columns) -> Matrix:
        """Features of a DataFrame or any mapping of column name -> sequence."""
        n = len(columns["year"])
        out = np.empty((n, len(FEATURES)), dtype=np.float64)
        dep, arr = _minutes(columns["sched_dep_time"]), _minutes(columns["sched_arr_time"])
        days, holidays = _days(columns), self.holidays
        pos = np.searchsorted(holidays, days)
        after = np.abs(days - holidays[np.maximum(pos - 1, 0)])
        before = np.abs(holidays[np.minimum(pos, len(holidays) - 1)] - days)
        derived = {
            "dep_min": dep,
            "arr_min": arr,
            "block_min": (arr - dep) % 1440,
            "day_of_week": (days + 3) % 7,  # 1970-01-01 was a Thursday; Monday is 0
            "holiday_days": np.minimum(after, before),
            "distance": np.asarray(columns["distance"], dtype=np.float64),
        }
        for i, name in enumerate(SCHEDULE):
            out[:, i] = derived[name]
        for i, name in enumerate(PASSED, start=len(SCHEDULE)):
            out[:, i] = np.asarray(columns[name], dtype=np.float64) if name in columns else np.nan
        # values as one object array each: iterating it is several times faster than iterating
        # a pandas (Arrow-backed) column
        tails = _objects(columns["tailnum"]) if "tailnum" in columns else [None] * n
        plane = [self.planes.get(t, _NO_PLANE) for t in tails]
        start = len(SCHEDULE) + len(PASSED)
        out[:, start : start + len(PLANE)] = np.asarray(plane, dtype=np.float64).reshape(n, -1)
        codes = {}
        for i, col in enumerate(CATEGORICAL, start=len(NUMERIC)):
            table = self.categories[col]
            out[:, i] = [table.get(v, np.nan) for v in _objects(columns[col])]
            codes[col] = out[:, i]
        start += len(PLANE)
        out[:, start] = self._pair_rates("route_rate", codes)
        out[:, start + 1] = self._pair_rates("carrier_origin_rate", codes)
        out[:, start + 2] = self._rates_by_int("dep_hour_rate", (dep // 60) % 24)
        out[:, start + 3] = self._rates_by_int("weekday_rate", derived["day_of_week"])
        return self._finish(out)

    def _rate(self, name: str, key: str) -> float:
        table = self.history.get(name)
        return table.get(key, self.prior) if table else math.nan

    def rows(self, records: Sequence[Record]) -> Matrix:
        """``transform`` of flight records, computed row by row (fast for a few rows).

        Same arithmetic: a day past the month's end rolls over like numpy's datetime64, clock
        times use float floor division and remainder.
        """
        holidays = self._holiday_list
        last = len(holidays) - 1
        rows = []
        for r in records:
            dep, arr = _clock(r["sched_dep_time"]), _clock(r["sched_arr_time"])
            first = dt.date(int(r["year"]), int(r["month"]), 1).toordinal() - _EPOCH
            days = first + int(r["day"]) - 1
            pos = bisect.bisect_left(holidays, days)
            near = min(abs(days - holidays[max(pos - 1, 0)]), abs(holidays[min(pos, last)] - days))
            weekday = (days + 3) % 7
            row = [dep, arr, (arr - dep) % 1440, weekday, near, float(r["distance"])]
            row += [_float(r.get(name)) for name in PASSED]
            row += self.planes.get(r.get("tailnum"), _NO_PLANE)
            row += [
                self._rate("route_rate", f"{r['origin']}-{r['dest']}"),
                self._rate("carrier_origin_rate", f"{r['carrier']}-{r['origin']}"),
                self._rate("dep_hour_rate", str(int(r["sched_dep_time"]) // 100 % 24)),
                self._rate("weekday_rate", str(weekday)),
            ]
            row += [self.categories[col].get(r[col], math.nan) for col in CATEGORICAL]
            rows.append(row)
        return self._finish(np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES)))

    def columns(self, records: Sequence[Record]) -> Matrix:
        """``transform`` of flight records, column-wise (fast for many rows).

        The numeric fields of all records become one float matrix in one numpy call (None is
        NaN), read with one C-level ``itemgetter`` call per record when every field is there
        (``Flight`` values, as the API passes them); the codes stay Python lists.
        """
        try:
            numbers = [_NUMBER_FIELDS(r) for r in records]
        except KeyError:  # records without some optional fields: those are missing
            numbers = [tuple(r.get(name) for name in _NUMBERS) for r in records]
        matrix = np.array(numbers, dtype=np.float64).reshape(len(records), len(_NUMBERS))
        columns: dict[str, Any] = dict(zip(_NUMBERS, matrix.T, strict=True))
        for name in _CODES:
            columns[name] = [r.get(name) for r in records]
        return self.transform(columns)
