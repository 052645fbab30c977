"""HTTP load benchmark of the Bento: `bentoml serve` on loopback, driven by a bounded client.

Usage (from the repository root; `make bench-http` runs it with the project's files)::

    uv run --locked python -m benchmarks.bench_http --model models/model.joblib \
        --params params.yaml --metrics-in metrics/evaluate.json \
        --rows data/features/test.parquet --out metrics/benchmark_http.json

The model is imported into a throwaway BENTOML_HOME, `bentoml serve
flightdelay.serving.service:FlightDelay` starts on a free 127.0.0.1 port, and a light asyncio
HTTP/1.1 client (keep-alive sockets, pre-built requests) sends a fixed number of requests per
scenario (1 or 100 flights per request, at concurrency 1 and 32). Each repeat starts a fresh
server and runs every scenario; the JSON holds the median of each figure over the repeats (flat
keys; error counts are summed), the server process tree's peak RSS, the same model scored
in-process in bulk (the ceiling), and the load average.
The client shares the machine with the server, so the figures are a floor on a quiet 2-core box.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import cli, loopback
from benchmarks.loopback import Server, tree_pss_mb, tree_rss_mb
from flightdelay.compile.predictor import Predictor
from flightdelay.contract.schema import CATEGORICAL, TARGET
from flightdelay.core.io import setup_logging, write_json
from flightdelay.model.predict import predict_proba, records_frame
from flightdelay.model.store import load_model

log = logging.getLogger("bench_http")
ROOT = Path(__file__).resolve().parents[1]
#: name -> (flights per request, concurrency, requests per repeat), run in this order on a fresh
#: server per repeat; the last one repeats the first after the bursts, since a lone request must be
#: as fast after load as before (with BentoML's adaptive batching it was not: see service.predict)
SCENARIOS = {
    "c1_rows1": (1, 1, 1000),
    "c1_rows100": (100, 1, 200),
    "c32_rows1": (1, 32, 2000),
    "c32_rows100": (100, 32, 1500),
    "after_burst_c1_rows1": (1, 1, 500),
}


def import_model(home: Path, args: argparse.Namespace) -> str:
    os.environ["BENTOML_HOME"] = str(home)  # read by bentoml when release imports it
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    from flightdelay.ops.release import current_release  # noqa: PLC0415 - after BENTOML_HOME
    from flightdelay.ops.release import import_model as release_import  # noqa: PLC0415

    release = current_release(ROOT)
    return str(release_import(args.model, args.params, args.metrics_in, release))


@contextmanager
def serving(home: Path, tag: str) -> Iterator[Server]:
    """`bentoml serve` of the service module on a free loopback port; the group stopped on exit."""
    env = {**os.environ, "BENTOML_HOME": str(home), "FLIGHTDELAY_MODEL_TAG": tag}
    target = "flightdelay.serving.service:FlightDelay"
    try:
        with loopback.serving(target, env, home / "serve.log", cwd=ROOT) as server:
            log.info("server ready at %s in %.1f s", server.url, server.ready_s)
            yield server
    except loopback.ServeError as exc:
        raise SystemExit(f"{Path(sys.argv[0]).name}: {exc}") from None


def http_request(host: str, body: bytes) -> bytes:
    """The bytes of one keep-alive ``POST /predict`` to ``host`` (``ip:port``) carrying ``body``
    (built once, sent often)."""
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked body); return its status code."""
    status = int((await reader.readline()).split(b" ", 2)[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status
    while size := int((await reader.readline()).split(b";")[0], 16):
        await reader.readexactly(size + 2)  # the chunk and its CRLF
    await reader.readline()  # the CRLF after the last (empty) chunk
    return status


async def drive(url: str, bodies: list[bytes], concurrency: int) -> tuple[np.ndarray, int, float]:
    """Send each body once, ``concurrency`` requests in flight: latencies (ms), errors, wall (s).

    Each of the ``concurrency`` connections is a keep-alive socket that writes a pre-built request
    and reads the status line, headers and body. A general client (httpx) spends about 2 ms of CPU
    per request here, which on a 2-core machine is taken from the server being measured.
    """
    address = url.removeprefix("http://")
    pending = collections.deque(http_request(address, body) for body in bodies)
    host, port = address.rsplit(":", 1)
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while pending:
                request = pending.popleft()
                started = time.perf_counter()
                try:
                    writer.write(request)
                    ok = await asyncio.wait_for(read_response(reader), 60) == 200  # noqa: PLR2004
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError):
                    ok = False
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return np.asarray(latencies), errors, wall


def scenario(url: str, rows: list[dict[str, Any]], name: str, seed: int) -> dict[str, float]:
    size, concurrency, count = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(rows) - size, count)
    bodies = [json.dumps(rows[s : s + size]).encode() for s in starts]
    asyncio.run(drive(url, bodies[: max(10, count // 20)], concurrency))  # warm-up
    ms, errors, wall = asyncio.run(drive(url, bodies, concurrency))
    result = {f"{name}_ms_p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)}
    result |= {
        f"{name}_requests_per_s": count / wall,
        f"{name}_rows_per_s": count * size / wall,
        f"{name}_errors": float(errors),
    }
    p50, p99 = result[f"{name}_ms_p50"], result[f"{name}_ms_p99"]
    log.info(
        "%-12s p50 %.2f ms, p99 %.2f ms, %.0f rows/s, %d errors",
        name,
        p50,
        p99,
        count * size / wall,
        errors,
    )
    return result


def request_rows(rows_path: Path, model_path: Path) -> list[dict[str, Any]]:
    """Test rows whose codes the model knows, as JSON-ready dicts (an unknown code is a 400)."""
    frame = pd.read_parquet(rows_path).drop(columns=[TARGET])
    known = load_model(model_path).named_steps["features"].categories_
    mask = np.logical_and.reduce([frame[c].isin(list(known[c])) for c in CATEGORICAL])
    rows: list[dict[str, Any]] = json.loads(frame[mask].to_json(orient="records"))
    return rows


def ceiling(model_path: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Rows/s of the same model scored in-process in one bulk call: the compiled path on the
    request dicts, the reference Pipeline on a DataFrame, and the better one (the ceiling)."""
    predictor = Predictor.from_path(model_path)
    frame = records_frame(rows)
    started = time.perf_counter()
    predictor.predict_records(rows)
    fast = len(rows) / (time.perf_counter() - started)
    started = time.perf_counter()
    predict_proba(predictor.model, frame)
    reference = len(rows) / (time.perf_counter() - started)
    return {
        "inprocess_fast_bulk_rows_per_s": fast,
        "inprocess_reference_bulk_rows_per_s": reference,
        "inprocess_bulk_rows_per_s": max(fast, reference),
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output: benchmark JSON")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2013)
    args = parser.parse_args(argv)
    setup_logging()
    # a SIGTERM unwinds like Ctrl-C, so the server's process group is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would flood
    rows = request_rows(args.rows, args.model)
    load_before = os.getloadavg()[0]
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        tag = import_model(Path(tmp), args)
        for repeat in range(args.repeats):
            log.info("repeat %d/%d", repeat + 1, args.repeats)
            with serving(Path(tmp), tag) as server:
                url, pid = server.url, server.pid
                run: dict[str, float] = {"server_rss_mb": tree_rss_mb(pid)}
                run["server_pss_mb"] = tree_pss_mb(pid)
                for name in SCENARIOS:
                    run |= scenario(url, rows, name, args.seed + repeat)
                    run["server_rss_mb"] = max(run["server_rss_mb"], tree_rss_mb(pid))
                    run["server_pss_mb"] = max(run["server_pss_mb"], tree_pss_mb(pid))
            run |= ceiling(args.model, rows)
            runs.append(run)
    # errors add up over the repeats; every other figure is the median of the repeats
    result = {
        k: float((np.sum if k.endswith("_errors") else np.median)([r[k] for r in runs]))
        for k in runs[0]
    }
    result["c32_rows100_fraction_of_ceiling"] = (
        result["c32_rows100_rows_per_s"] / result["inprocess_bulk_rows_per_s"]
    )
    result |= {"repeats": float(args.repeats), "load_avg_1m_before": load_before}
    result["load_avg_1m_after"] = os.getloadavg()[0]
    result = {k: round(v, 4) for k, v in result.items()}
    for key, value in sorted(result.items()):
        log.info("%-34s %12.4f", key, value)
    write_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
