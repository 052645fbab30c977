"""Soak test of the Bento: a fixed request rate for a fixed time; zero errors, flat memory.

Usage (from the repository root; `make soak` runs it with the project's files)::

    uv run --locked python -m benchmarks.soak --model models/model.joblib --params params.yaml \
        --metrics-in metrics/evaluate.json --rows data/features/test.parquet \
        [--duration 60] [--rate 40] [--flights 5] [--out soak.json]

The model is imported into a throwaway BENTOML_HOME and `bentoml serve` starts on a free
127.0.0.1 port (as benchmarks/bench_http.py does). After a warm-up, requests of ``--flights`` test
rows go out on a fixed schedule (open loop: request i at i / rate seconds, at most
``--max-in-flight`` outstanding), ``rate * duration`` of them in all. The RSS of the server's
process tree is sampled every half second. It passes when every request got a 200 and the median
RSS of the last ``--window`` seconds is within ``--max-drift`` (10 %) of the first window's.
Progress is logged every 10 s; the figures at the end, and as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import bench_http as bench
from benchmarks import cli

log = logging.getLogger("soak")
HEADERS = {"content-type": "application/json"}


@dataclass
class SoakResult:
    """What the server did under a fixed-rate load."""

    rate: float
    duration_s: float
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    late_starts: int = 0  # requests sent > 100 ms after their slot (client or server saturated)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")


def memory_windows(rss: list[tuple[float, float]], window_s: float) -> tuple[float, float]:
    """Median RSS (MB) of the first and of the last ``window_s`` seconds of samples."""
    if not rss:
        raise ValueError("no RSS samples: the soak did not run")
    end = rss[-1][0]
    first = [mb for t, mb in rss if t <= rss[0][0] + window_s]
    last = [mb for t, mb in rss if t >= end - window_s]
    return statistics.median(first), statistics.median(last)


def summary(result: SoakResult, window_s: float) -> dict[str, float]:
    """Flat figures of a soak: counts, achieved rate, latency percentiles, memory drift."""
    first, last = memory_windows(result.rss, window_s)
    ms = np.asarray(result.latencies_ms or [0.0])
    return {
        "requests": float(result.sent),
        "errors": float(result.errors),
        "late_starts": float(result.late_starts),
        "rate_target_per_s": result.rate,
        "rate_achieved_per_s": result.sent / result.duration_s,
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p99": float(np.percentile(ms, 99)),
        "latency_ms_max": float(ms.max()),
        "rss_first_window_mb": first,
        "rss_last_window_mb": last,
        "rss_drift": (last - first) / first,
    }


def problems(figures: dict[str, float], max_drift: float) -> list[str]:
    """Why a soak failed; empty when it passed."""
    found = []
    if figures["errors"]:
        found.append(f"{figures['errors']:.0f} of {figures['requests']:.0f} requests failed")
    if abs(figures["rss_drift"]) > max_drift:
        found.append(
            f"server RSS moved {figures['rss_drift']:+.1%} (limit ±{max_drift:.0%}): "
            f"{figures['rss_first_window_mb']:.1f} MB -> {figures['rss_last_window_mb']:.1f} MB"
        )
    return found


async def _sample_rss(result: SoakResult, rss_mb: Any, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        result.rss.append((time.perf_counter() - started, rss_mb()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


@dataclass(frozen=True)
class Load:
    """A fixed-rate load: ``rate`` requests per second for ``duration_s``."""

    rate: float
    duration_s: float
    max_in_flight: int = 64


async def soak(url: str, bodies: list[bytes], load: Load, rss_mb: Any) -> SoakResult:
    """POST ``bodies`` (cycled) to ``url``/predict on the schedule of ``load``, sampling
    ``rss_mb()`` (the server's memory) every half second."""
    rate, max_in_flight = load.rate, load.max_in_flight
    result = SoakResult(rate, load.duration_s)
    total = int(rate * load.duration_s)
    gate = asyncio.Semaphore(max_in_flight)
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async def one(client: httpx.AsyncClient, body: bytes) -> None:
        sent = time.perf_counter()
        try:
            resp = await client.post(f"{url}/predict", content=body, headers=HEADERS)
            status = str(resp.status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        result.latencies_ms.append((time.perf_counter() - sent) * 1000)
        result.statuses[status] += 1
        gate.release()

    stop = asyncio.Event()
    started = time.perf_counter()
    sampler = asyncio.create_task(_sample_rss(result, rss_mb, started, stop))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        tasks = []
        for i in range(total):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            await gate.acquire()
            result.late_starts += time.perf_counter() - (started + i / rate) > 0.1  # noqa: PLR2004
            tasks.append(asyncio.create_task(one(client, bodies[i % len(bodies)])))
            result.sent += 1
            if i and i % int(rate * 10) == 0:
                log.info("soak: %4.0f s, %d sent, %d errors", i / rate, result.sent, result.errors)
        await asyncio.gather(*tasks)
    stop.set()
    await sampler
    return result


def make_bodies(rows: list[dict[str, Any]], flights: int, count: int, seed: int) -> list[bytes]:
    """``count`` request bodies of ``flights`` consecutive rows from random starts."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, max(1, len(rows) - flights), count)
    return [json.dumps(rows[s : s + flights]).encode() for s in starts]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--flights", type=int, default=5, help="flights per request")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load not measured")
    parser.add_argument("--window", type=float, default=10.0, help="memory window, seconds")
    parser.add_argument("--max-drift", type=float, default=0.10, help="RSS change allowed")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2013)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)

    bench.setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the server group
    rows = bench.request_rows(args.rows, args.model)
    bodies = make_bodies(rows, args.flights, 2000, args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        tag = bench.import_model(Path(tmp), args)
        with bench.serving(Path(tmp), tag) as server:
            url, pid = server.url, server.pid
            rss = lambda: bench.tree_rss_mb(pid)  # noqa: E731
            log.info("soak: warm-up %.0f s at %.0f req/s", args.warmup, args.rate)
            asyncio.run(soak(url, bodies, Load(args.rate, args.warmup, args.max_in_flight), rss))
            log.info("soak: %.0f s at %.0f req/s, %d flights each", args.duration, args.rate,
                     args.flights)  # fmt: skip
            load = Load(args.rate, args.duration, args.max_in_flight)
            result = asyncio.run(soak(url, bodies, load, rss))
    figures = {k: round(v, 4) for k, v in summary(result, args.window).items()}
    for key, value in figures.items():
        log.info("soak: %-22s %12.4f", key, value)
    log.info("soak: statuses %s", dict(result.statuses))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    found = problems(figures, args.max_drift)
    for problem in found:
        log.error("soak: FAILED: %s", problem)
    if not found:
        log.info("soak: passed (0 errors, RSS drift %+.1f%%)", 100 * figures["rss_drift"])
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
