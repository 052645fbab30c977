"""A colour: ``bentoml serve <bento>`` on its loopback port, detached, so it outlives the deploy.

The server runs in a session of its own with its log under the environment's folder; it is
pinned to its Bento's model (``FLIGHTDELAY_MODEL_TAG``), so two colours in one BentoML home
serve two models. Stopping it ends the whole process tree: BentoML starts its workers in
sessions of their own, which a signal to the group would miss.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from flightdelay.ops.deploy.config import DeployError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BentoInfo:
    """What a deploy needs of a built Bento: its tag, its model's tag, version and folder, and
    the md5 that dvc.lock records for the model file (how the MLflow registry knows it)."""

    tag: str
    model_tag: str
    model_version: str
    model_path: Path
    dvc_md5: str


def bento_info(tag: str) -> BentoInfo:
    """The Bento ``tag`` of the BentoML store (``$BENTOML_HOME``).

    Raises:
        DeployError: no such Bento, or it holds not exactly one model.
    """
    import bentoml  # noqa: PLC0415 - BentoML stays at the edge
    from bentoml.exceptions import NotFound  # noqa: PLC0415

    try:
        bento = bentoml.bentos.get(tag)
        models = bento.info.all_models
        if len(models) != 1:
            raise DeployError(f"bento {tag} has {len(models)} models, not one")
        model = bentoml.models.get(models[0].tag)
    except NotFound as exc:
        raise DeployError(
            f"{exc} (build it with `make bento`; BENTOML_HOME is where it looks)"
        ) from exc
    return BentoInfo(
        str(bento.tag),
        str(model.tag),
        str(model.tag.version),
        Path(model.path),
        str(model.info.metadata.get("dvc_md5", "")),
    )


def start(
    bento: BentoInfo, port: int, workers: int, log_path: Path, extra_env: Mapping[str, str]
) -> int:
    """Start serving ``bento`` on 127.0.0.1:``port``, this process's environment plus
    ``extra_env``; returns the server's pid."""
    bentoml = str(Path(sys.executable).parent / "bentoml")
    env = {**os.environ, **extra_env, "FLIGHTDELAY_MODEL_TAG": bento.model_tag,
           "FLIGHTDELAY_WORKERS": str(workers)}  # fmt: skip
    cmd = [bentoml, "serve", bento.tag, "--host", "127.0.0.1", "--port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - bentoml of this environment, a Bento tag
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    log.info("started %s on port %d (pid %d, log %s)", bento.tag, port, proc.pid, log_path)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def ready(port: int, timeout_s: float = 1.0) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s).status_code == 200  # noqa: PLR2004
    except httpx.HTTPError:
        return False


def wait_ready(pid: int, port: int, timeout_s: float, log_path: Path) -> float:
    """Seconds until the server answers ``/readyz`` with 200.

    Raises:
        DeployError: it exited, or was not ready in ``timeout_s`` (with its log's tail).
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not alive(pid):
            tail = log_path.read_text(errors="replace")[-1500:]
            raise DeployError(f"the server exited before it was ready:\n{tail}")
        if ready(port):
            return time.monotonic() - started
        time.sleep(0.2)
    raise DeployError(f"not ready after {timeout_s:.0f} s (/readyz on port {port})")


def stop(pid: int, timeout_s: float = 30) -> None:
    """SIGTERM to the server and its workers (BentoML drains what they hold), SIGKILL after
    ``timeout_s``; a pid that is gone, or is no longer a ``bentoml serve``, is left alone."""
    try:
        server = psutil.Process(pid)
        if "bentoml" not in " ".join(server.cmdline()):
            return
        tree = [server, *server.children(recursive=True)]
    except psutil.Error:
        return
    for proc in tree:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    _, left = psutil.wait_procs(tree, timeout=timeout_s)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=5)
