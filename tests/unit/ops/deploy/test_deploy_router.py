"""The proxy's config and access log, and the watch's verdict on a colour, without processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flightdelay.ops.deploy.config import Environment
from flightdelay.ops.deploy.router import BACKUP, Entry, parse, render
from flightdelay.ops.deploy.watch import judge

ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = ROOT / "deploy" / "nginx.conf"
ENV = Environment(name="t", port=9000, colours={"blue": 9001, "green": 9002}, min_requests=10,
                  max_error_rate=0.05, max_p99_ms=100)  # fmt: skip


def test_weights_and_the_backup_are_server_lines(tmp_path: Path) -> None:
    conf = render(TEMPLATE, tmp_path, 9000, {9001: 90, 9002: 10}, max_body=1234)
    assert "server 127.0.0.1:9001 weight=90 " in conf
    assert "server 127.0.0.1:9002 weight=10 " in conf
    assert "listen 127.0.0.1:9000;" in conf
    assert "client_max_body_size 1234;" in conf
    assert re.findall(r"@[A-Z_]+@", conf) == []  # every token filled
    backup = render(TEMPLATE, tmp_path, 9000, {9002: 100, 9001: BACKUP})
    assert "server 127.0.0.1:9001 backup " in backup


def test_a_config_without_a_live_colour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no colour takes traffic"):
        render(TEMPLATE, tmp_path, 9000, {9001: BACKUP})


def test_access_log_lines() -> None:
    entry = parse("1764800000.123|200|0.004|127.0.0.1:9002, 127.0.0.1:9001|502, 200\n")
    assert entry == Entry(1764800000.123, 200, 0.004, ("127.0.0.1:9002", "127.0.0.1:9001"),
                          ("502", "200"))  # fmt: skip
    assert parse("not a line of ours") is None
    assert parse("x|200|0.1|a|b") is None


def entries(n_ok: int, n_failed: int, seconds: float = 0.002, port: int = 9002) -> list[Entry]:
    ok = [Entry(0, 200, seconds, (f"127.0.0.1:{port}",), ("200",)) for _ in range(n_ok)]
    # refused by the new colour, answered by the old one: the client saw a 200, the colour failed
    failed = [Entry(0, 200, 0.003, (f"127.0.0.1:{port}", "127.0.0.1:9001"), ("502", "200"))
              for _ in range(n_failed)]  # fmt: skip
    return ok + failed


def test_errors_count_even_when_the_other_colour_answered() -> None:
    verdict = judge(entries(90, 10), 9002, ENV, final=True)
    assert (verdict.ok, verdict.requests, verdict.errors) == (False, 100, 10)
    assert "error rate 10/100" in verdict.reason
    assert judge(entries(96, 4), 9002, ENV, final=True).ok


def test_the_p99_bound_and_the_traffic_floor_apply_at_the_end() -> None:
    slow = entries(50, 0, seconds=0.2)
    assert judge(slow, 9002, ENV, final=False).ok
    verdict = judge(slow, 9002, ENV, final=True)
    assert not verdict.ok and "p99 200 ms over 100 ms" in verdict.reason
    few = entries(3, 0)
    assert not judge(few, 9002, ENV, final=True).ok
    assert judge(few, 9002, ENV, final=True, require_traffic=False).ok
    assert judge(entries(50, 0, port=9001), 9002, ENV, final=True).requests == 0  # another colour
