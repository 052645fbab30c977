"""``flightdelay notify`` against a real HTTP receiver on loopback (http.server in a thread)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flightdelay.ops import cli, notify

ENV = "FLIGHTDELAY_TEST_WEBHOOK"


@dataclass
class Receiver:
    """What the webhook server got, and the status it answers with."""

    url: str
    status: int = 200
    bodies: list[dict[str, object]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            got.bodies.append(json.loads(self.rfile.read(length)))
            got.content_types.append(self.headers["Content-Type"])
            self.send_response(got.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads what was received, not the server's log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-path"
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "RETRY_DELAY_S", 0.0)


def _notify(text: str = "ci failed: https://example.invalid/run/1") -> int:
    return cli.main(["notify", "--webhook-env", ENV, "--text", text])


def test_the_message_arrives_as_slack_json(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, receiver.url)
    assert _notify("release failed: run 42") == 0
    assert receiver.bodies == [{"text": "release failed: run 42"}]
    assert receiver.content_types == ["application/json"]


def test_a_server_error_is_retried_once_then_named(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, receiver.url)
    receiver.status = 500
    assert _notify() == 1
    assert len(receiver.bodies) == 2  # the first attempt and one retry
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("notify: error: the webhook at http://127.0.0.1:")
    assert "answered HTTP 500" in lines[-1]
    assert "secret-path" not in "\n".join(lines)  # the URL's path is its credential


def test_a_client_error_is_not_retried(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, receiver.url)
    receiver.status = 404
    assert _notify() == 1
    assert len(receiver.bodies) == 1
    assert "answered HTTP 404" in capsys.readouterr().err


def test_an_unreachable_port_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(ENV, f"http://127.0.0.1:{port}/hook")
    assert _notify() == 1
    err = capsys.readouterr().err
    assert f"notify: error: the webhook at http://127.0.0.1:{port} is unreachable" in err
    assert "(after 2 attempts)" in err


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_secret_means_nothing_to_send(
    value: str | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    with caplog.at_level("INFO", logger="flightdelay.ops.notify"):
        assert _notify() == 0
    assert f"{ENV} is not set" in caplog.text


def test_a_url_that_is_not_http_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, "file:///etc/passwd")
    assert _notify() == 1
    assert "notify: error: the webhook URL is not an http(s) URL" in capsys.readouterr().err


def test_an_empty_text_is_refused(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV, receiver.url)
    assert _notify("  ") == 1
    assert receiver.bodies == []
    assert "--text is empty" in capsys.readouterr().err
