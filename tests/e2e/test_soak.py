"""Sustained load: a fixed request rate against a live `bentoml serve`, zero errors, flat memory.

The short version of `make soak` (benchmarks/soak.py, 60 s on the full model): 10 s at 30 requests/s
of 5 test flights each after a warm-up, the RSS of the server's process tree sampled every half
second; the medians of the first and the last 3 s must be within 10 %.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest
from reliability_helpers import shared_server

from benchmarks import bench_http, soak
from benchmarks.loopback import Server, tree_rss_mb

log = logging.getLogger(__name__)
RATE, SECONDS, WINDOW_S, MAX_DRIFT = 30.0, 10.0, 3.0, 0.10


@pytest.mark.e2e
@pytest.mark.slow
def test_fixed_rate_soak_has_no_errors_and_flat_memory(
    request: pytest.FixtureRequest, small_repo: Path
) -> None:
    server: Server = shared_server(request, small_repo, "default")
    rows = bench_http.request_rows(
        small_repo / "data/features/test.parquet", small_repo / "models/model.joblib"
    )
    bodies = soak.make_bodies(rows, 5, 500, seed=1)
    pid = server.pid

    def rss() -> float:
        return tree_rss_mb(pid)

    asyncio.run(soak.soak(server.url, bodies, soak.Load(RATE, 3.0), rss))  # warm-up
    result = asyncio.run(soak.soak(server.url, bodies, soak.Load(RATE, SECONDS), rss))
    figures = soak.summary(result, WINDOW_S)
    log.warning("soak %.0f s at %.0f req/s: %s", SECONDS, RATE, figures)
    assert result.sent == int(RATE * SECONDS)
    assert result.statuses == Counter({"200": result.sent}), result.statuses
    assert soak.problems(figures, MAX_DRIFT) == []
    assert figures["rate_achieved_per_s"] == pytest.approx(RATE, rel=0.05)


def _result(statuses: dict[str, int], rss: list[tuple[float, float]]) -> object:
    result = soak.SoakResult(rate=10.0, duration_s=1.0, sent=sum(statuses.values()))
    result.statuses.update(statuses)
    result.rss.extend(rss)
    return result


def test_soak_verdict_flags_errors_and_memory_growth() -> None:
    growing = [(t / 2, 100.0 + 2 * t) for t in range(40)]  # 100 MB -> 178 MB over 20 s
    figures = soak.summary(_result({"200": 8, "503": 2}, growing), window_s=5.0)
    found = soak.problems(figures, 0.10)
    assert found[0] == "2 of 10 requests failed"
    assert found[1].startswith("server RSS moved +")
    flat = [(t / 2, 100.0 + (t % 3)) for t in range(40)]
    assert soak.problems(soak.summary(_result({"200": 10}, flat), window_s=5.0), 0.10) == []


def test_soak_without_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no RSS samples: the soak did not run"):
        soak.memory_windows([], 10.0)
