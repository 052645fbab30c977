"""Stage 5, benchmark: how fast and how large the winning model is, in this process.

Two paths are timed on the same rows: the reference (the sklearn Pipeline on a DataFrame, keys
without a prefix) and the compiled path the service uses (the ``runtime.ServingModel``, saved and
read back as the API reads it, on flight dicts; keys prefixed ``fast_``), with the ratios as
``*_speedup``. The compiled path runs its trees on one thread below ``runtime.PARALLEL_ROWS``
(64) rows and on every core from there, as the API's workers do; the Pipeline runs on sklearn's
own OpenMP threads. ``fast_load_ms`` is loading the Pipeline and compiling it,
``served_load_ms`` is what an API worker spends loading the saved ``ServingModel``. Inputs are
prepared before the clock starts, so each timing is the prediction call alone. Timings vary
between machines and runs, so benchmark.json is a metric to read, not one to gate on.
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import TARGET
from flightdelay.core.io import read_parquet, run_main, write_json
from flightdelay.core.params import BenchmarkParams, load_params
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import load_model
from flightdelay.serving.runtime import ServingModel, TreeScorer

log = logging.getLogger(__name__)

LOADS = 5
BULK_REPEATS = 5  # bulk, frame in: the median of this many calls per path


def latencies_ms(call: Callable[[int], object], n: int) -> np.ndarray:
    """Wall time of ``call(i)`` for i in range(n), in milliseconds."""
    out = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        call(i)
        out[i] = (time.perf_counter() - started) * 1000
    return out


def percentiles(prefix: str, ms: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_ms_p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def time_path(
    prefix: str,
    predict: Callable[[Any], object],
    inputs: tuple[Sequence[Any], Sequence[Any], Any],
    batch_size: int,
) -> dict[str, float]:
    """Single-row and batch latency percentiles and bulk rows/s of one prediction path.

    Args:
        prefix: prepended to every key ("" for the reference, "fast_" for the compiled path).
        predict: the path, called with one prepared input.
        inputs: single-row inputs, batch inputs and the bulk input, in the path's own form.
        batch_size: rows per batch input (names the batch keys).
    """
    singles, batches, bulk = inputs
    predict(singles[0])  # warm-up: the first call pays for lazy imports
    single = latencies_ms(lambda i: predict(singles[i]), len(singles))
    batch = latencies_ms(lambda i: predict(batches[i]), len(batches))
    bulk_s = latencies_ms(lambda _: predict(bulk), 1)[0] / 1000
    log.info(
        "%s path: single-row p50 %.3f ms", prefix.rstrip("_") or "reference", np.median(single)
    )
    return {
        **percentiles(f"{prefix}single_row", single),
        **percentiles(f"{prefix}batch_{batch_size}", batch),
        f"{prefix}bulk_rows_per_s": len(bulk) / bulk_s,
    }


def draw_inputs(
    records: pd.DataFrame, params: BenchmarkParams, seed: int
) -> tuple[list[pd.DataFrame], list[pd.DataFrame], pd.DataFrame]:
    """The timed rows, drawn once from ``records`` by the seed: singles, batches, bulk."""
    rng = np.random.default_rng(seed)
    rows = records.iloc[rng.integers(0, len(records), params.single_rows)].reset_index(drop=True)
    starts = rng.integers(0, max(1, len(records) - params.batch_size), params.batches)
    bulk = records.iloc[rng.integers(0, len(records), params.bulk_rows)].reset_index(drop=True)
    singles = [rows.iloc[i : i + 1] for i in range(len(rows))]
    batches = [records.iloc[s : s + params.batch_size] for s in starts]
    return singles, batches, bulk


def _as_dicts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def run(
    model_path: Path, records: pd.DataFrame, params: BenchmarkParams, seed: int
) -> dict[str, float]:
    """Load time, latency and throughput of both paths and their ratios, size, peak memory."""
    load_ms = latencies_ms(lambda _: load_model(model_path), LOADS)
    fast_load_ms = latencies_ms(lambda _: Predictor.from_path(model_path), LOADS)
    predictor = Predictor.from_path(model_path)
    served: dict[str, float] = {}
    scorer: Callable[[Sequence[dict[str, Any]]], Any] = predictor.predict_records
    if predictor.fast is not None:  # time the form the API loads: saved, then read back
        with tempfile.TemporaryDirectory() as saved:
            predictor.fast.save(saved)
            served["served_load_ms_median"] = float(
                np.median(latencies_ms(lambda _: ServingModel.load(saved), LOADS))
            )
            scorer = ServingModel.load(saved).predict_records
    singles, batches, bulk = draw_inputs(records, params, seed)
    log.info("timing the reference path (sklearn Pipeline on DataFrames)")
    ref = time_path(
        "", lambda x: predict_proba(predictor.model, x), (singles, batches, bulk), params.batch_size
    )
    log.info("timing the compiled path (ServingModel.predict_records on flight dicts)")
    fast_inputs = (
        [_as_dicts(s) for s in singles],
        [_as_dicts(b) for b in batches],
        _as_dicts(bulk),
    )
    fast = time_path("fast_", scorer, fast_inputs, params.batch_size)
    diff = np.abs(scorer(fast_inputs[2]) - predict_proba(predictor.model, bulk))
    frame = bulk_frame(predictor, bulk)
    batch = f"batch_{params.batch_size}_ms_p50"
    return {
        **frame,
        "load_ms_median": float(np.median(load_ms)),
        "fast_load_ms_median": float(np.median(fast_load_ms)),
        **served,
        **ref,
        **fast,
        "fast_compiled": float(predictor.fast is not None),
        "fast_max_abs_diff": float(diff.max()),
        "single_row_speedup": ref["single_row_ms_p50"] / fast["fast_single_row_ms_p50"],
        f"batch_{params.batch_size}_speedup": ref[batch] / fast[f"fast_{batch}"],
        "bulk_speedup": fast["fast_bulk_rows_per_s"] / ref["bulk_rows_per_s"],
        "model_size_mb": model_path.stat().st_size / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _ignoring_index(call: Callable[[], object]) -> Callable[[int], object]:
    return lambda _: call()


def bulk_frame(predictor: Predictor, bulk: pd.DataFrame) -> dict[str, float]:
    """Bulk end to end, a DataFrame in and probabilities out, for the three scorers in one run:
    the Pipeline, the ONNX ServingModel and the native trees (``compile.native``), as rows/s
    (median of ``BULK_REPEATS``) and ratios to the Pipeline."""
    log.info("timing bulk, frame in: the Pipeline, the ONNX trees, the native trees")
    native = Predictor(predictor.model, native=True)
    tree = native.fast.scorer if native.fast is not None else None
    built = isinstance(tree, TreeScorer) and tree.native is not None
    paths: dict[str, Callable[[], NDArray[np.float64]]] = {
        "pipeline": lambda: predict_proba(predictor.model, bulk),
        "onnx": lambda: predictor.predict_frame(bulk),
        "native": lambda: native.predict_frame(bulk),
    }
    out: dict[str, float] = {"native_compiled": float(built)}
    for name, path in paths.items():
        path()  # warm-up
        seconds = float(np.median(latencies_ms(_ignoring_index(path), BULK_REPEATS))) / 1000
        out[f"bulk_frame_{name}_rows_per_s"] = len(bulk) / seconds
    for name in ("onnx", "native"):
        out[f"bulk_frame_{name}_speedup"] = (
            out[f"bulk_frame_{name}_rows_per_s"] / out["bulk_frame_pipeline_rows_per_s"]
        )
    reference = paths["pipeline"]()
    out["native_max_abs_diff"] = float(np.max(np.abs(paths["native"]() - reference)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--in", dest="inp", required=True, help="feature table to draw rows from")
    parser.add_argument("--metrics", required=True, help="output: benchmark JSON")
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        records = read_parquet(args.inp).drop(columns=[TARGET])
        result = run(Path(args.model), records, params.benchmark, params.base.seed)
        # a difference of 1e-16 must not be rounded away to 0.0
        exact = {"fast_max_abs_diff", "native_max_abs_diff"}
        result = {k: v if k in exact else round(v, 4) for k, v in result.items()}
        for key, value in result.items():
            log.info("%-26s %12.4g", key, value)
        write_json(result, args.metrics)

    return run_main("benchmark", body)


if __name__ == "__main__":
    raise SystemExit(main())
