"""Refusals reach the client: a body over the limit gets its 413 even when the client sends the
whole body before it reads, as most HTTP clients do, and the server keeps serving.

A plain socket client, so that nothing between it and `bentoml serve` reads early or retries.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_helpers import GOOD, shared_server

from benchmarks.loopback import Server

pytestmark = pytest.mark.e2e
LIMIT = 2 * 2**20  # FLIGHTDELAY_MAX_BODY_BYTES's default
FLIGHT = json.dumps(GOOD).encode()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, small_repo: Path) -> Server:
    return shared_server(request, small_repo, "default")


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


def test_a_200000_flight_body_sent_whole_gets_its_413(server: Server) -> None:
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


def test_a_chunked_body_within_the_limit_is_answered(server: Server) -> None:
    body = b"[" + b",".join([FLIGHT] * 3) + b"]"
    status, answer = _exchange(server, _head("Transfer-Encoding: chunked\r\n"), _chunked(body, 50))
    assert status == 200
    assert [a["probability"] for a in answer] == [_still_serving(server)] * 3
