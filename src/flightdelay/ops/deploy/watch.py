"""Watching a colour that takes traffic: its error rate and p99 in nginx's access log, and its
``/readyz``, over a window, while probes keep a floor of traffic through the proxy.

A request counts for the colour when nginx tried it there: an error when the colour's attempt
was not answered (a refused or reset connection: ``502``) or answered 5xx, even when nginx then
got an answer from the other colour; its time counts for the p99 when the colour answered it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from flightdelay.ops.deploy.colour import alive, ready
from flightdelay.ops.deploy.config import Environment
from flightdelay.ops.deploy.router import Entry, Router

CHECK_S = 0.5  # how often the window looks at the log and the colour
NOT_READY = 3  # this many failed /readyz in a row fail the window at once


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    requests: int
    errors: int
    p99_ms: float


def judge(
    entries: list[Entry], port: int, env: Environment, final: bool, require_traffic: bool = True
) -> Verdict:
    """The colour on ``port`` over ``entries``; ``final``: the window is over (otherwise only a
    rate that is already out of bounds fails); ``require_traffic``: fewer than ``min_requests``
    at the end fail (a window that saw nothing proves nothing)."""
    addr = f"127.0.0.1:{port}"
    tried = answered = errors = 0
    times: list[float] = []
    for entry in entries:
        for upstream, status in zip(entry.upstreams, entry.upstream_statuses, strict=False):
            if upstream != addr:
                continue
            tried += 1
            if not status.isdigit() or int(status) >= 500:  # noqa: PLR2004
                errors += 1
            else:
                answered += 1
                times.append(entry.seconds)
    p99 = float(np.percentile(times, 99)) * 1000 if times else 0.0
    rate = errors / max(tried, env.min_requests)
    if rate > env.max_error_rate:
        return Verdict(
            False, f"error rate {errors}/{tried} over {env.max_error_rate:.1%}", tried, errors, p99
        )
    if final and answered >= env.min_requests and p99 > env.max_p99_ms:
        return Verdict(False, f"p99 {p99:.0f} ms over {env.max_p99_ms:.0f} ms", tried, errors, p99)
    if final and require_traffic and tried < env.min_requests:
        return Verdict(
            False, f"{tried} requests reached it, fewer than {env.min_requests}", tried, errors, p99
        )
    return Verdict(True, "", tried, errors, p99)


class Probes:
    """Reference flights sent through the proxy at ``rate`` per second, on a thread, until
    stopped: the window has traffic to judge even when no client calls."""

    def __init__(self, url: str, body: list[dict[str, Any]], rate: float) -> None:
        self.url, self.body, self.rate = url, body, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploy-probes", daemon=True)

    def __enter__(self) -> Probes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(1 / self.rate):
                try:
                    client.post(f"{self.url}/predict", json=self.body)
                except httpx.HTTPError:
                    continue  # the log has it; the window judges


def watch(  # noqa: PLR0913, PLR0917 - the colour, the window and where its log begins
    router: Router,
    pid: int,
    port: int,
    env: Environment,
    seconds: float,
    offset: int,
    *,
    require_traffic: bool = True,
) -> Verdict:
    """Watch the colour (server ``pid`` on ``port``) for ``seconds``, the access log read from
    byte ``offset`` (where the colour started taking traffic); stops at the first failure."""
    entries: list[Entry] = []
    deadline, misses = time.monotonic() + seconds, 0
    while True:
        new, offset = router.entries(offset)
        entries += new
        if not alive(pid):
            return Verdict(False, "the server exited", *_counts(entries, port, env))
        misses = 0 if ready(port) else misses + 1
        if misses >= NOT_READY:
            return Verdict(
                False, f"/readyz failed {misses} times in a row", *_counts(entries, port, env)
            )
        final = time.monotonic() >= deadline
        verdict = judge(entries, port, env, final, require_traffic)
        if final or not verdict.ok:
            return verdict
        time.sleep(CHECK_S)


def _counts(entries: list[Entry], port: int, env: Environment) -> tuple[int, int, float]:
    verdict = judge(entries, port, env, final=False)
    return verdict.requests, verdict.errors, verdict.p99_ms
