"""Batch scoring: ``flightdelay score --in flights.parquet|csv --out predictions.parquet``.

For planners and data scientists who score a whole schedule from a file rather than through the
API. The input is read in chunks of ``--chunk-rows`` (pyarrow's streaming Parquet and CSV
readers), so memory stays bounded whatever the file's size; each chunk is validated against the
request contract (the ``Flight`` fields' types and bounds, HHMM minutes, real dates), rows that
fail go to the rejects file with the field and the problem named, and the run goes on. The rest
are scored by the model's compiled form (``compile.predictor.Predictor``, the same code the API
serves) and written in input order: the input's row number, the flight's identity columns that
the file has, the probability, the label at ``evaluate.threshold`` and the model version (DVC's
md5 of the model file). Outputs are written to temporary files and renamed at the end: a failed
run leaves no partial predictions.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import RECORD_COLUMNS, TARGET, Flight, record_schema
from flightdelay.core.dvc import file_md5
from flightdelay.core.errors import StageError
from flightdelay.core.io import atomic, run_main
from flightdelay.core.params import load_params

if TYPE_CHECKING:
    import pandera.pandas as pa
    import pyarrow as pa_arrow

log = logging.getLogger(__name__)

#: columns that name a flight, copied to the output when the input has them
IDENTITY = (
    "year",
    "month",
    "day",
    "sched_dep_time",
    "carrier",
    "flight",
    "origin",
    "dest",
    "tailnum",
)
REQUIRED = tuple(name for name, field in Flight.model_fields.items() if field.is_required())
OPTIONAL = tuple(name for name in RECORD_COLUMNS if name not in REQUIRED)
REJECT_COLUMNS = ("row", "field", "problem", "value")


class ScoreError(StageError):
    """The run cannot start or go on (unreadable file, missing column); the message says why."""


@cache
def request_schema() -> pa.DataFrameSchema:
    """The contract's flight-record schema without the target, with the API's own rules on
    top: code patterns, the tail number's length, HHMM minutes below 60 (dates: ``bad_dates``).
    Other input columns are kept. Built once, on the first chunk."""
    import pandera.pandas as pa  # noqa: PLC0415 - pandera loads only for a run

    columns = {n: c for n, c in record_schema().columns.items() if n != TARGET}
    extra: dict[str, list[pa.Check]] = {
        name: [pa.Check(lambda s: s % 100 < 60, error="minutes must be below 60")]  # noqa: PLR2004
        for name in ("sched_dep_time", "sched_arr_time")
    }
    for name, field in Flight.model_fields.items():
        for meta in field.metadata:
            if getattr(meta, "pattern", None):
                extra.setdefault(name, []).append(pa.Check.str_matches(meta.pattern))
            if getattr(meta, "max_length", None):
                extra.setdefault(name, []).append(pa.Check.str_length(max_value=meta.max_length))
    for name, checks in extra.items():
        columns[name] = columns[name].set_checks([*columns[name].checks, *checks])
    return pa.DataFrameSchema(columns, strict=False, coerce=True, name="flights to score")


def bad_dates(chunk: pd.DataFrame) -> pd.Series:
    """True where year/month/day is not a real calendar date."""
    parts = chunk[["year", "month", "day"]].apply(pd.to_numeric, errors="coerce")
    dates: pd.Series = pd.to_datetime(parts, errors="coerce")
    return dates.isna()


def chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The file as DataFrames of about ``rows`` rows at most (Parquet or CSV, by suffix; CSV
    blocks are sized in bytes, about 200 per flight)."""
    import pyarrow.csv as pv  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    batches: Iterator[pa_arrow.RecordBatch]
    try:
        if path.suffix == ".parquet":
            batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
        elif path.suffix == ".csv":
            read = pv.ReadOptions(block_size=max(1 << 16, min(rows * 200, 1 << 30)))
            batches = pv.open_csv(
                path, read, convert_options=pv.ConvertOptions(strings_can_be_null=True)
            )
        else:
            raise ScoreError(f"{path}: not a .parquet or .csv file")
        for batch in batches:
            yield batch.to_pandas()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ScoreError(f"{path}: cannot read: {exc}") from exc


def validate(chunk: pd.DataFrame, first_row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the valid rows, coerced; one reject line per bad field of the other rows).

    Raises:
        ScoreError: a required column is missing (no row could be scored).
    """
    import pandera.pandas as pa  # noqa: PLC0415

    missing = [name for name in REQUIRED if name not in chunk]
    if missing:
        raise ScoreError(
            f"the input has no column {', '.join(missing)} (required: {', '.join(REQUIRED)})"
        )
    for name in OPTIONAL:
        if name not in chunk:
            chunk[name] = None if name == "tailnum" else np.nan
    dates = bad_dates(chunk)
    when = chunk.loc[dates, ["year", "month", "day"]].astype(str)
    rejects = [
        pd.DataFrame(
            {
                "row": chunk.index[dates].to_numpy(dtype=np.int64) + first_row,
                "field": "year/month/day",
                "problem": "not a real date",
                "value": (when["year"] + "-" + when["month"] + "-" + when["day"]).to_numpy(),
            }
        )
    ]
    chunk = chunk.loc[~dates]
    schema = request_schema()
    try:
        valid = schema.validate(chunk, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases[exc.failure_cases["index"].notna()]
        rows = cases["index"].astype(np.int64)
        rejects.append(
            pd.DataFrame(
                {
                    "row": rows.to_numpy() + first_row,
                    "field": cases["column"].astype(str).to_numpy(),
                    "problem": cases["check"].astype(str).to_numpy(),
                    "value": cases["failure_case"].astype(str).to_numpy(),
                }
            )
        )
        valid = schema.validate(chunk.drop(index=rows.unique()), lazy=True)
    valid["tailnum"] = valid["tailnum"].map(lambda t: t.upper() if isinstance(t, str) else None)
    bad = pd.concat(rejects, ignore_index=True).drop_duplicates()
    return valid, bad.sort_values(["row", "field"], kind="stable").reset_index(drop=True)


@dataclass
class Totals:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Options:
    rejects: Path  # where the rejected rows go
    threshold: float  # evaluate.threshold: the label's cut-off
    chunk_rows: int = 200_000
    progress: bool = True


def score(model: Path, source: Path, out: Path, options: Options) -> Totals:
    """Score ``source`` into ``out`` (and ``options.rejects``); see the module docstring."""
    import pyarrow as pa_arrow  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    if not model.is_file():
        raise ScoreError(f"{model}: no such model file (run the pipeline: uv run dvc repro)")
    if not source.is_file():
        raise ScoreError(f"{source}: no such input file")
    predictor = Predictor.from_path(model, native=True)
    version = file_md5(model)
    log.info("model %s (md5 %s), %s path", model, version,
             "compiled" if predictor.fast is not None else "sklearn Pipeline")  # fmt: skip
    totals, started = Totals(), time.perf_counter()
    bar = tqdm(unit=" rows", unit_scale=True, disable=not options.progress, file=sys.stderr)
    with atomic(out) as tmp_out, atomic(options.rejects) as tmp_rejects:
        writer: pq.ParquetWriter | None = None
        rejected: list[pd.DataFrame] = []
        for chunk in chunks(source, options.chunk_rows):
            first = totals.rows
            valid, bad = validate(chunk, first)
            proba = predictor.predict_frame(valid)
            identity = [c for c in IDENTITY if c in chunk]
            result = valid[identity].reset_index(names="row")
            result["row"] += first
            result["probability"] = proba
            result["delayed"] = proba >= options.threshold
            result["model_version"] = version
            table = pa_arrow.Table.from_pandas(result, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp_out, table.schema)
            writer.write_table(table)
            rejected.append(bad)
            totals.rows += len(chunk)
            totals.scored += len(valid)
            totals.rejected += bad["row"].nunique() if len(bad) else 0
            bar.update(len(chunk))
        if writer is None:
            raise ScoreError(f"{source}: no rows")
        writer.close()
        frame = pd.concat(rejected, ignore_index=True) if rejected else pd.DataFrame()
        frame = frame.reindex(columns=list(REJECT_COLUMNS))
        frame.astype({"row": "int64"} if len(frame) else {}).to_parquet(tmp_rejects, index=False)
    bar.close()
    totals.seconds = time.perf_counter() - started
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flightdelay score",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=Path("models/model.joblib"))
    parser.add_argument(
        "--in", dest="inp", type=Path, required=True, help="flights (.parquet, .csv)"
    )
    parser.add_argument("--out", type=Path, required=True, help="predictions (.parquet)")
    parser.add_argument(
        "--rejects", type=Path, help="rows that fail the contract (default: <out>.rejects.parquet)"
    )
    parser.add_argument("--params", default="params.yaml", help="for evaluate.threshold")
    parser.add_argument(
        "--chunk-rows", type=int, default=200_000, help="rows read and scored at a time"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.chunk_rows < 1:
            raise ScoreError(f"--chunk-rows must be at least 1, got {args.chunk_rows}")
        threshold = load_params(args.params).evaluate.threshold
        rejects = args.rejects or args.out.with_name(args.out.stem + ".rejects.parquet")
        options = Options(rejects, threshold, args.chunk_rows, progress=not args.no_progress)
        totals = score(args.model, args.inp, args.out, options)
        rate = totals.rows / totals.seconds if totals.seconds else float("nan")
        log.info("%d rows in %.1f s (%.0f rows/s): %d scored -> %s", totals.rows, totals.seconds,
                 rate, totals.scored, args.out)  # fmt: skip
        log.info("%d rows rejected -> %s", totals.rejected, rejects)

    return run_main("score", body)


if __name__ == "__main__":
    raise SystemExit(main())
