"""`bentoml serve` on a free loopback port: for the HTTP benchmark, soak and fuzz scripts and the
end-to-end tests.

The server runs in a session of its own, so stopping it (SIGTERM to the group, SIGKILL after 30 s)
ends BentoML's worker processes too; it counts as ready when ``/readyz`` answers 200.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil


class ServeError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log's tail."""


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # of `bentoml serve`; its workers are its children
    ready_s: float  # from start to the first 200 of /readyz
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> float:
    """Seconds until ``url``/readyz answers 200.

    Raises:
        ServeError: the process exited, or ``timeout_s`` passed (with the log's last 3000 chars).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise ServeError(f"server exited ({proc.returncode}):\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == httpx.codes.OK:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServeError(f"not ready after {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def serving(
    target: str, env: Mapping[str, str], log: Path, cwd: Path, timeout_s: float = 120
) -> Iterator[Server]:
    """``bentoml serve <target>`` (a Bento tag or ``module:Service``) on 127.0.0.1, stopped on exit.

    Args:
        target: what to serve.
        env: the server's whole environment (BENTOML_HOME, FLIGHTDELAY_* ...).
        log: file for the server's stdout and stderr.
        cwd: the server's working directory (a ``module:Service`` is imported from it).
        timeout_s: how long to wait for readiness.
    """
    port = free_port()
    bentoml = str(Path(sys.executable).parent / "bentoml")
    cmd = [bentoml, "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed command
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        yield Server(url, proc.pid, wait_ready(url, proc, log, timeout_s), log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tree_sum(pid: int, field: str) -> float:
    """MB of a ``memory_full_info`` field summed over a process and all of its children (BentoML
    runs worker processes); a child that is gone or a zombie counts as nothing."""
    proc = psutil.Process(pid)
    total = 0
    for member in [proc, *proc.children(recursive=True)]:
        try:
            info = member.memory_full_info() if field != "rss" else member.memory_info()
            total += getattr(info, field)
        except psutil.Error:
            continue
    return total / 2**20


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process tree: a shared library page counts once per process."""
    return _tree_sum(pid, "rss")


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of the process tree: each shared page split among the processes
    that map it, so the sum counts it once (close to what a container's memory cgroup charges)."""
    return _tree_sum(pid, "pss")
