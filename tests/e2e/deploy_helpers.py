"""Helpers of the deployment tests: environments on free loopback ports, a constant load through
the proxy, and ``flightdelay deploy`` run as the command it is."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from bento_helpers import release_env

from benchmarks.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]


def environments(folder: Path, **settings: Any) -> Path:
    """An environments file (staging, production on free ports) beside a copy of nginx.conf."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "deploy" / "nginx.conf", folder / "nginx.conf")
    envs: dict[str, Any] = {
        name: {"port": free_port(), "colours": {"blue": free_port(), "green": free_port()}}
        for name in ("staging", "production")
    }
    envs["production"]["requires"] = "staging"
    defaults = {"steps": [10, 50, 100], "step_s": 3, "watch_s": 5, "workers": 1, "min_requests": 10}
    envs["defaults"] = defaults | settings
    path = folder / "environments.yaml"
    path.write_text(yaml.safe_dump(envs), "utf-8")
    return path


def port_of(environments_file: Path, env: str) -> int:
    return int(yaml.safe_load(environments_file.read_text())[env]["port"])


def colour_port(environments_file: Path, env: str, colour: str) -> int:
    return int(yaml.safe_load(environments_file.read_text())[env]["colours"][colour])


def command(action: Sequence[str], environments_file: Path, state: Path) -> list[str]:
    """``flightdelay deploy|rollback ...`` (``action[0]``) against the test's environments."""
    module = [sys.executable, "-m", "flightdelay.ops.cli"]
    return [*module, *action, "--environments", str(environments_file), "--dir", str(state)]


def run(
    action: Sequence[str], environments_file: Path, state: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(action, environments_file, state),
        env=release_env(home), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


@dataclass
class Load:
    """``rate`` requests per second of one flight to ``url``/predict, over keep-alive
    connections, until stopped: each answer's time, status (or error) and model version."""

    url: str
    flight: dict[str, Any]
    rate: float = 120
    clients: int = 4
    answers: list[tuple[float, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.stopped = time.monotonic()

    def _client(self) -> None:
        period = self.clients / self.rate
        with httpx.Client(timeout=10) as client:
            due = time.monotonic()
            while not self._stop.is_set():
                due += period
                try:
                    answer = client.post(f"{self.url}/predict", json=[self.flight])
                    version = answer.json()[0]["model_version"] if answer.status_code == 200 else ""  # noqa: PLR2004
                    self.answers.append((time.monotonic(), str(answer.status_code), version))
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    self.answers.append((time.monotonic(), type(exc).__name__, ""))
                self._stop.wait(max(0.0, due - time.monotonic()))

    def failed(self) -> list[tuple[float, str, str]]:
        return [a for a in self.answers if a[1] != "200"]

    def per_second(self) -> float:
        return len(self.answers) / (self.stopped - self.started)

    def versions(self, since: float = 0.0) -> set[str]:
        return {v for t, s, v in self.answers if t >= since and s == "200"}
