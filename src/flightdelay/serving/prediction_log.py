"""The served predictions: every answered ``/predict``, off the hot path, in bounded rotating files.

The request guard (``serving.edges``) hands each answered request to ``PredictionLog.record``: its
id, the request body and the response body, as the bytes that crossed the wire, so nothing is
encoded again. ``record`` only appends one line to a buffer; the buffer is written after the
answer has gone, ``FLUSH_S`` later on the worker's event loop (at once outside one), with one
``os.write`` of whole lines, so a worker killed at any instant leaves whole lines only (and loses
at most the last ``FLUSH_S`` of them). Each worker appends to ``predictions-w<worker>.jsonl``
under the log's folder; past ``max_bytes`` the file rotates (``.1`` ... ``.<backups>``, the
oldest dropped), so a worker holds at most ``(backups + 1) * max_bytes`` on disk, and a buffer
that cannot be written fast enough drops lines (counted) instead of growing.

A line: ``{"time", "request_id", "flights": [<the request>], "answers": [<the response>]}``;
``read_lines`` gives one record per flight: time, request id, model version, probability, label
and the flight's fields as sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "predictions-"
FLUSH_S = 0.05
#: the settings the service reads: the folder (``off``: no log), MB per file, rotated files kept
DIR_ENV, MB_ENV, BACKUPS_ENV = (
    "FLIGHTDELAY_PREDICTION_LOG", "FLIGHTDELAY_PREDICTION_LOG_MB",
    "FLIGHTDELAY_PREDICTION_LOG_BACKUPS",
)  # fmt: skip


class PredictionLog:
    """A rotating JSON-lines log of one worker's answers.

    Args:
        directory: where the files go (made if missing).
        worker: the worker's name in the file name (BentoML's worker index, or the pid).
        max_bytes: size at which the file rotates.
        backups: rotated files kept.
        max_buffered: bytes waiting to be written past which new lines are dropped (counted).
    """

    def __init__(  # noqa: PLR0913 - the file, its bounds and the buffer's
        self, directory: Path, worker: str, max_bytes: int, backups: int,
        max_buffered: int = 8 * 2**20,
    ) -> None:  # fmt: skip
        self.path = directory / f"{PREFIX}w{worker}.jsonl"
        self.max_bytes, self.backups, self.max_buffered = max_bytes, backups, max_buffered
        self.dropped = self._buffered = 0
        self._lines: list[bytes] = []
        self._scheduled = False
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(fd).st_size
        if size:  # a line cut short (a full disk) must not swallow the next one
            with self.path.open("rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(fd, b"\n")
        return fd

    def record(self, request_id: str, request: bytes, response: bytes) -> None:
        """Buffer one answered request (its body and the answer's, JSON); never blocks."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        # a raw newline in JSON is whitespace: flattened, the line stays one line
        line = b"".join((
            b'{"time":"', stamp.encode(), b'","request_id":', json.dumps(request_id).encode(),
            b',"flights":', request.replace(b"\n", b" ").replace(b"\r", b" "),
            b',"answers":', response.replace(b"\n", b" ").replace(b"\r", b" "), b"}\n",
        ))  # fmt: skip
        if self._buffered + len(line) > self.max_buffered:
            self.dropped += 1
            return
        self._lines.append(line)
        self._buffered += len(line)
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            self._scheduled = True
        except RuntimeError:  # no event loop: write now
            self.flush()

    def flush(self) -> None:
        """Write what is buffered, in one call, rotating first when the file would pass its size."""
        self._scheduled = False
        if not self._lines:
            return
        data, self._lines, self._buffered = b"".join(self._lines), [], 0
        try:
            if os.fstat(self._fd).st_size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:  # one call for a regular file; the loop covers a short write
                view = view[os.write(self._fd, view) :]
        except OSError as exc:  # the service keeps serving
            log.warning("prediction log %s: %s", self.path, exc)

    def _rotate(self) -> None:
        os.close(self._fd)
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i - 1}" if i > 1 else self.path.name)
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i}"))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


def from_env(worker: str) -> PredictionLog | None:
    """The log the environment asks for: ``$FLIGHTDELAY_PREDICTION_LOG`` (default
    ``$BENTOML_HOME/predictions``), 64 MB files, 4 kept; None when it says ``off``."""
    folder = os.environ.get(DIR_ENV) or str(
        Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "predictions"
    )
    if folder.lower() == "off":
        return None
    mb, backups = int(os.environ.get(MB_ENV) or 64), int(os.environ.get(BACKUPS_ENV) or 4)
    try:
        found = PredictionLog(Path(folder), worker, mb * 2**20, backups)
    except OSError as exc:  # a read-only disk: the service serves, unrecorded, and says so
        log.warning("no prediction log (%s=%s): %s", DIR_ENV, folder, exc)
        return None
    log.info("answers logged to %s", found.path)
    return found


def read_lines(directory: Path) -> Iterator[dict[str, Any]]:
    """One record per logged flight, each worker's files oldest first: time, request_id,
    model_version, probability, delayed and the flight's fields. A line that is not JSON (a disk
    that filled up mid-write) is skipped with a warning naming the file and line."""
    for current in sorted(directory.glob(f"{PREFIX}*.jsonl")):
        rotated = sorted(directory.glob(f"{current.name}.*"), key=lambda p: -int(p.suffix[1:]))
        for path in [*rotated, current]:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        log.warning("%s:%d: not a JSON line, skipped", path, number)
                        continue
                    head = {"time": entry["time"], "request_id": entry["request_id"]}
                    for flight, answer in zip(entry["flights"], entry["answers"], strict=True):
                        yield {**head, **answer, "flight": flight}
