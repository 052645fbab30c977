"""Refusals reach the client: a body over the limit gets its 413 even when the client sends the
whole body before it reads, as most HTTP clients do, and the server keeps serving.

A plain socket client, so that nothing between it and `bentoml serve` reads early or retries.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_helpers import GOOD, shared_server

from benchmarks.loopback import Server
from benchmarks.proxy import proxying
from conftest import unavailable

pytestmark = pytest.mark.e2e
LIMIT = 2 * 2**20  # FLIGHTDELAY_MAX_BODY_BYTES's default
FLIGHT = json.dumps(GOOD).encode()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, small_repo: Path) -> Server:
    return shared_server(request, small_repo, "default")


@pytest.fixture(scope="module")
def proxied(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same server behind the deployment's reverse proxy (nginx, deploy/nginx.conf)."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx is not installed: apt-get install -y nginx-light")
    with proxying(server.url, tmp_path_factory.mktemp("nginx"), LIMIT) as url:
        through = httpx.get(f"{url}/readyz", timeout=10)
        assert through.status_code == 200
        assert through.headers["server"].startswith("nginx/")  # the answer came through nginx
        yield Server(url, server.pid, server.ready_s, server.log)


def _exchange(server: Server, head: str, body: bytes) -> tuple[int, Any]:
    """Send the request whole, then read the answer to its end: (status, JSON body)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + body)  # a reset connection raises here
        answer = b""  # the request says `Connection: close`: the answer ends where the data does
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload)


def _head(extra: str) -> str:
    return (
        "POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    )


def _still_serving(server: Server) -> float:
    """The probability of the example flight, from a plain request after the refusal."""
    done = httpx.post(f"{server.url}/predict", json=[GOOD], timeout=10)
    assert done.status_code == 200, done.text
    probability: float = done.json()[0]["probability"]
    return probability


@pytest.mark.parametrize("via", ["server", "proxied"])
def test_a_200000_flight_body_sent_whole_gets_its_413(
    via: str, request: pytest.FixtureRequest
) -> None:
    """Straight from `bentoml serve`, and through nginx, which refuses it first with the same
    answer (client_max_body_size is the service's limit)."""
    server: Server = request.getfixturevalue(via)
    body = b"[" + b",".join([FLIGHT] * 200_000) + b"]"  # about 40 MB
    assert len(body) > 15 * LIMIT
    status, answer = _exchange(server, _head(f"Content-Length: {len(body)}\r\n"), body)
    assert status == 413
    assert answer == {"error": f"body of {len(body)} bytes exceeds the limit of {LIMIT} bytes"}
    _still_serving(server)


def _chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_gets_its_413(server: Server) -> None:
    """No Content-Length to refuse by: the guard counts the body as it comes."""
    body = b"[" + b",".join([FLIGHT] * 20_000) + b"]"  # about 4 MB
    status, answer = _exchange(server, _head("Transfer-Encoding: chunked\r\n"), _chunked(body))
    assert status == 413
    assert answer == {"error": f"body exceeds the limit of {LIMIT} bytes"}
    _still_serving(server)


def test_through_the_proxy_a_body_within_its_limit_reaches_the_service(proxied: Server) -> None:
    """A body nginx lets through but the service refuses by its own count gets the service's
    413; a valid one is answered, through the proxy, with the direct answer."""
    body = b"[" + b",".join([FLIGHT] * 3) + b"]"
    status, answer = _exchange(proxied, _head(f"Content-Length: {len(body)}\r\n"), body)
    assert status == 200
    assert [a["probability"] for a in answer] == [_still_serving(proxied)] * 3


def test_a_chunked_body_within_the_limit_is_answered(server: Server) -> None:
    body = b"[" + b",".join([FLIGHT] * 3) + b"]"
    status, answer = _exchange(server, _head("Transfer-Encoding: chunked\r\n"), _chunked(body, 50))
    assert status == 200
    assert [a["probability"] for a in answer] == [_still_serving(server)] * 3
