"""The prediction log: lines as answered, bounded on disk, whole lines after a kill, no waiting."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flightdelay.serving import prediction_log
from flightdelay.serving.prediction_log import PREFIX, PredictionLog, read_lines

FLIGHT = {"year": 2013, "month": 7, "day": 4, "carrier": "UA", "origin": "EWR", "dest": "ORD"}


def body(*flights: dict[str, object]) -> bytes:
    return json.dumps(list(flights), indent=2).encode()  # newlines, as a client may send


def answers(*probabilities: float) -> bytes:
    return json.dumps([{"probability": p, "delayed": p >= 0.5, "model_version": "v1"}
                       for p in probabilities]).encode()  # fmt: skip


def test_each_flight_reads_back_with_its_answer(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, "1", max_bytes=2**20, backups=2)
    log.record("req-1", body(FLIGHT, {**FLIGHT, "day": 5}), answers(0.1, 0.7))
    log.record('req-"2"', body(FLIGHT), answers(0.5))
    log.close()
    raw = (tmp_path / f"{PREFIX}w1.jsonl").read_text().splitlines()
    assert len(raw) == 2  # a request is one line, whatever its body's layout
    lines = list(read_lines(tmp_path))
    assert [(x["request_id"], x["probability"], x["delayed"]) for x in lines] == [
        ("req-1", 0.1, False), ("req-1", 0.7, True), ('req-"2"', 0.5, True),
    ]  # fmt: skip
    assert lines[1]["flight"] == {**FLIGHT, "day": 5}
    assert {x["model_version"] for x in lines} == {"v1"}
    assert lines[0]["time"].endswith("+00:00")


def test_on_the_event_loop_the_write_comes_after_the_answer(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, "1", max_bytes=2**20, backups=2)

    async def serve() -> tuple[int, int]:
        for i in range(3):
            log.record(f"r{i}", body(FLIGHT), answers(0.2))
        before = len(list(read_lines(tmp_path)))  # nothing written while answering
        await asyncio.sleep(prediction_log.FLUSH_S * 3)
        return before, len(list(read_lines(tmp_path)))

    assert asyncio.run(serve()) == (0, 3)
    log.close()


def test_the_files_rotate_and_stay_bounded(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, "1", max_bytes=20_000, backups=2)
    for i in range(2_000):
        log.record(f"r{i}", body({**FLIGHT, "day": i % 28 + 1}), answers(i / 2000))
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{PREFIX}w1.jsonl", f"{PREFIX}w1.jsonl.1", f"{PREFIX}w1.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 20_000 for f in files)
    ids = [int(x["request_id"][1:]) for x in read_lines(tmp_path)]
    assert ids == sorted(ids)  # oldest file first, no line twice
    assert ids[-1] == 1999  # the newest are kept, the oldest dropped
    assert len(ids) < 2000


def test_past_its_bound_the_buffer_drops_and_counts_instead_of_growing(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, "1", max_bytes=2**20, backups=1, max_buffered=2_000)

    async def burst() -> None:  # no flush can run between these: they all wait in the buffer
        for i in range(100):
            log.record(f"r{i}", body(FLIGHT), answers(0.3))

    asyncio.run(burst())
    log.close()
    written = len(list(read_lines(tmp_path)))
    assert written + log.dropped == 100
    assert 0 < written < 100


def test_off_means_no_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prediction_log.DIR_ENV, "off")
    assert prediction_log.from_env("1") is None
    monkeypatch.setenv(prediction_log.DIR_ENV, str(tmp_path / "log"))
    found = prediction_log.from_env("2")
    assert found is not None and found.path == tmp_path / "log" / f"{PREFIX}w2.jsonl"
    found.close()
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(prediction_log.DIR_ENV, str(tmp_path / "file" / "log"))
    assert prediction_log.from_env("3") is None  # the service serves on, unrecorded


WRITER = """
import sys, itertools, time
from pathlib import Path
from flightdelay.serving.prediction_log import PredictionLog
log = PredictionLog(Path(sys.argv[1]), "1", max_bytes=50_000_000, backups=1)
flights = ("[" + ",".join(['{"carrier": "UA", "pad": "' + "x" * 300 + '"}'] * 50) + "]").encode()
answers = ("[" + ",".join(['{"probability": 0.25}'] * 50) + "]").encode()
print("ready", flush=True)
for i in itertools.count():
    log.record(f"r{i}", flights, answers)
    time.sleep(0.001)
"""


def test_a_worker_killed_mid_write_leaves_whole_lines(tmp_path: Path) -> None:
    for _ in range(2):  # the second writer appends to what the killed one left
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE
        )
        assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready")
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    raw = [line for p in tmp_path.iterdir() for line in p.read_text().splitlines() if line.strip()]
    assert all(json.loads(line)["request_id"] for line in raw)  # every line is whole
    assert len(raw) > 100
    assert {x["flight"]["carrier"] for x in read_lines(tmp_path)} == {"UA"}
