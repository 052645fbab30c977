"""The environment's nginx: its config from ``deploy/nginx.conf``, weights per colour, graceful
reloads, and the access log the watch reads.

nginx runs as a daemon with a prefix folder of its own (``nginx -p DIR -c DIR/nginx.conf``), so
it outlives the command that started it; ``nginx -s reload`` starts workers with the new weights
while the old ones finish the requests they hold, so a switch loses none.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from flightdelay.ops.deploy.config import DeployError

#: the service's default request body limit (FLIGHTDELAY_MAX_BODY_BYTES)
MAX_BODY = int(os.environ.get("FLIGHTDELAY_MAX_BODY_BYTES") or 2 * 2**20)
BACKUP = 0  # a weight of 0: the colour takes a request only when the other one fails it


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise DeployError("nginx is not installed: apt-get install -y nginx-light")
    return found


def server_lines(weights: Mapping[int, int]) -> str:
    """``server`` lines of the upstream: port -> weight (``BACKUP``: a backup server)."""
    lines = []
    for port, weight in weights.items():
        mode = "backup" if weight == BACKUP else f"weight={weight}"
        lines.append(f"        server 127.0.0.1:{port} {mode} max_fails=1 fail_timeout=2s;")
    return "\n".join(lines)


def render(
    template: Path, prefix: Path, port: int, weights: Mapping[int, int], max_body: int = MAX_BODY
) -> str:
    """``template`` (deploy/nginx.conf) with its tokens filled in."""
    if not any(w != BACKUP for w in weights.values()):
        raise ValueError(f"no colour takes traffic in {dict(weights)}")
    filled = template.read_text("utf-8")
    for token, value in {
        "@PREFIX@": str(prefix),
        "@PORT@": str(port),
        "@SERVERS@": server_lines(weights),
        "@MAX_BODY@": str(max_body),
    }.items():
        filled = filled.replace(token, value)
    return filled


def command(prefix: Path, *extra: str, foreground: bool = False) -> list[str]:
    """nginx with ``prefix``'s config; as root, workers stay root (``nobody`` could not enter
    a private prefix folder)."""
    directives = ("daemon off; " if foreground else "") + (
        "user root;" if os.geteuid() == 0 else ""
    )
    conf, log = prefix / "nginx.conf", prefix / "error.log"
    cmd = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-e", str(log)]
    return [*cmd, *(["-g", directives] if directives else []), *extra]


def _nginx(prefix: Path, *extra: str) -> None:
    done = subprocess.run(command(prefix, *extra), capture_output=True, text=True, check=False)  # noqa: S603 - nginx, our config
    if done.returncode != 0:
        raise DeployError(f"nginx {' '.join(extra) or 'start'} failed: {done.stderr.strip()}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Entry:
    """One request in the access log: when, its status, its seconds and who answered it."""

    at: float
    status: int
    seconds: float
    upstreams: tuple[str, ...]  # each tried address, in order
    upstream_statuses: tuple[str, ...]


def parse(line: str) -> Entry | None:
    parts = line.rstrip("\n").split("|")
    if len(parts) != 5:  # noqa: PLR2004 - the fields of log_format deploy
        return None
    at, status, seconds, addrs, statuses = parts
    try:
        return Entry(float(at), int(status), float(seconds),
                     tuple(a.strip() for a in addrs.split(",")),
                     tuple(s.strip() for s in statuses.split(",")))  # fmt: skip
    except ValueError:
        return None


class Router:
    """The nginx of one environment, under ``prefix``, on 127.0.0.1:``port``, its config made
    from ``template``."""

    def __init__(self, prefix: Path, port: int, template: Path) -> None:
        self.prefix, self.port, self.template = prefix, port, template
        self.access_log = prefix / "access.log"

    def pid(self) -> int | None:
        """The master's pid, when it runs."""
        try:
            pid = int((self.prefix / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def route(self, weights: Mapping[int, int]) -> None:
        """Send traffic by ``weights`` (port -> weight): start nginx, or reload it gracefully
        and wait until only workers with the new weights take connections."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        partial = self.prefix / ".nginx.conf.tmp"
        partial.write_text(render(self.template, self.prefix, self.port, weights), "utf-8")
        partial.replace(conf)
        master = self.pid()
        if master is None:
            _nginx(self.prefix)
            deadline = time.monotonic() + 10
            while not listening(self.port):
                if time.monotonic() > deadline:
                    raise DeployError(f"nginx is not listening on 127.0.0.1:{self.port}")
                time.sleep(0.05)
            return
        old = set(self._workers(master))
        _nginx(self.prefix, "-s", "reload")
        deadline = time.monotonic() + 10
        while True:  # a config nginx refused leaves the old workers: an error, not a hang
            workers = set(self._workers(master))
            if workers and not workers & old:
                return
            if time.monotonic() > deadline:
                tail = (self.prefix / "error.log").read_text(errors="replace")[-1000:]
                raise DeployError(f"nginx did not take the new weights {dict(weights)}: {tail}")
            time.sleep(0.05)

    @staticmethod
    def _workers(master: int) -> list[int]:
        """Workers that accept connections: an old one shutting down is 'nginx: worker process
        is shutting down' and no longer accepts."""
        found = []
        for child in psutil.Process(master).children():
            try:
                if "shutting down" not in " ".join(child.cmdline()):
                    found.append(child.pid)
            except psutil.Error:
                continue
        return found

    def drained(self, timeout_s: float = 30) -> None:
        """Wait until every worker of an earlier config has finished its requests and exited."""
        master = self.pid()
        deadline = time.monotonic() + timeout_s
        while master is not None and time.monotonic() < deadline:
            try:
                children = psutil.Process(master).children()
            except psutil.Error:
                return
            if len(children) <= len(self._workers(master)):
                return
            time.sleep(0.05)

    def stop(self) -> None:
        master = self.pid()
        if master is not None:
            os.kill(master, signal.SIGQUIT)  # graceful: the workers finish their requests
            psutil.wait_procs([psutil.Process(master)], timeout=30)

    def entries(self, offset: int) -> tuple[list[Entry], int]:
        """The access log's entries from byte ``offset`` on, and the offset after them."""
        try:
            with self.access_log.open("rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]  # a line nginx is still writing waits
        lines = complete.decode(errors="replace").splitlines()
        return [e for e in map(parse, lines) if e is not None], offset + len(complete)

    def log_size(self) -> int:
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0
