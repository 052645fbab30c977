"""Helpers of the reliability tests (fuzz, soak, faults): one Bento build per test session, shared
`bentoml serve` processes, and the server process tree's memory.

Built on ``bento_helpers`` (the release repository, the Bento build, ``serving``).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
from bento_helpers import Server, release, release_repo, serving, tags

from flightdelay.contract.schema import Flight

ROOT = Path(__file__).resolve().parents[2]
GOOD: dict[str, object] = Flight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
_BENTO = pytest.StashKey[tuple[str, Path]]()
_SERVERS = pytest.StashKey[dict[str, Server]]()
#: BentoML's override of the service config at serve time (no code change): two workers
TWO_WORKERS = {"BENTOML_CONFIG_OPTIONS": 'services."flight-delay".workers=2'}
#: the service's own knob: one worker
ONE_WORKER = {"FLIGHTDELAY_WORKERS": "1"}


def built_bento(request: pytest.FixtureRequest, small_repo: Path) -> tuple[str, Path]:
    """The Bento of the sampled pipeline run, built once per session: (tag, BENTOML_HOME)."""
    config = request.config
    if _BENTO not in config.stash:
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        repo = release_repo(factory.mktemp("reliability-release"), small_repo)
        home = factory.mktemp("reliability-bentoml")
        release(repo, home, "bento")
        config.stash[_BENTO] = (str(tags(repo, home)["bento"]), home)
    return config.stash[_BENTO]


def shared_server(
    request: pytest.FixtureRequest, small_repo: Path, name: str, env: dict[str, str] | None = None
) -> Server:
    """`bentoml serve` of the session's Bento, started on first use under ``name`` and stopped
    when the session ends (modules that only read from it share one)."""
    servers = request.config.stash.setdefault(_SERVERS, {})
    if name not in servers:
        bento, home = built_bento(request, small_repo)
        stack = ExitStack()
        request.config.add_cleanup(stack.close)
        log = home / f"serve-{name}.log"
        servers[name] = stack.enter_context(serving(bento, home, log, env))
    return servers[name]


def worker_pids(pid: int) -> list[int]:
    """The service's worker processes: children of `bentoml serve` running the worker module."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "_bentoml_impl.worker.service" in child.cmdline():
                found.append(child.pid)
        except psutil.Error:  # a killed worker is a zombie until the arbiter reaps it
            continue
    return found
