"""nginx in front of a server on loopback, from deploy/nginx.conf: for the tests and benchmarks
that check what a client sees through the deployment's reverse proxy."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.loopback import free_port
from flightdelay.ops.deploy.config import DeployError
from flightdelay.ops.deploy.router import command, render

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf"


class ProxyError(RuntimeError):
    """nginx is missing, refused its config or did not start; the message says which."""


def config(prefix: Path, port: int, upstream: str, max_body: int) -> str:
    """deploy/nginx.conf with its tokens filled in, one upstream server."""
    upstream_port = int(upstream.rsplit(":", 1)[1])
    return render(TEMPLATE, prefix, port, {upstream_port: 1}, max_body)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProxyError(f"nginx exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ProxyError(f"nginx is not listening on 127.0.0.1:{port} after 10 s")


@contextmanager
def proxying(upstream: str, prefix: Path, max_body: int) -> Iterator[str]:
    """nginx on a free loopback port in front of ``upstream``; yields its URL, stops it after.

    Raises:
        ProxyError: nginx is not installed, or did not start (its error log's tail).
    """
    try:
        cmd = command(prefix, foreground=True)
    except DeployError as exc:
        raise ProxyError(str(exc)) from exc
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(config(prefix, port, upstream, max_body), "utf-8")
    log = prefix / "error.log"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # noqa: S603 - fixed argv
    try:
        _wait_listening(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
