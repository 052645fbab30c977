"""Helpers of the end-to-end tests: a release repository, a Bento build and a real `bentoml serve`.

Not a conftest: the test modules import ``conftest`` (the root one) by name, and a second
conftest module would replace it in ``sys.modules``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import loopback
from benchmarks.loopback import Server
from conftest import CHILD_ENV, copy_repo


def release_repo(dest: Path, trained: Path) -> Path:
    """A committed copy of the project holding the model and metrics of a sampled pipeline run."""
    repo = copy_repo(dest)
    for rel in ("models/model.joblib", "metrics/evaluate.json"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trained / rel, repo / rel)
    return repo


def release_env(home: Path) -> dict[str, str]:
    """A BentoML home of its own, and the signing key pair beside it (release makes it)."""
    return {**CHILD_ENV, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
            "FLIGHTDELAY_SIGNING_DIR": str(home / "signing")}  # fmt: skip


def release(repo: Path, home: Path, action: str) -> subprocess.CompletedProcess[str]:
    """``python -m flightdelay.ops.release <action>`` on ``repo`` with its own BentoML home."""
    cmd = [sys.executable, "-m", "flightdelay.ops.release", action, "--repo", str(repo)]
    if action == "bento":
        cmd += ["--model", "models/model.joblib", "--params", "params.yaml"]
        cmd += ["--metrics", "metrics/evaluate.json"]
    done = subprocess.run(
        cmd, cwd=repo, env=release_env(home), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"release {action} failed:\n{done.stdout}\n{done.stderr}")
    return done


def tags(repo: Path, home: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(release(repo, home, "tags").stdout)
    return loaded


@contextmanager
def serving(
    target: str, home: Path, log: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """``bentoml serve <target>`` on a free loopback port with its own BentoML home."""
    with loopback.serving(target, {**release_env(home), **(env or {})}, log, cwd=home) as server:
        yield server
