"""DVC at the edges: its commands run in a repository (their output, or one clear line), and the
hash it records for a file."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flightdelay.core.errors import StageError


def dvc(
    args: list[str],
    repo: Path,
    error: type[StageError] = StageError,
    *,
    shown: bool = False,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``dvc <args>`` (the DVC of this interpreter) in ``repo``; its stdout.

    Args:
        args: the DVC command line after ``dvc``.
        repo: where to run it.
        error: the type of the error raised on failure.
        shown: let DVC write to the terminal (its progress bars, for long transfers) instead of
            capturing its output; then nothing is returned.
        env: the environment of DVC and of the stage commands it runs (default: this one's).

    Raises:
        StageError: (or ``error``) naming the command and DVC's last line of output.
    """
    done = subprocess.run(  # noqa: S603 - this interpreter, arguments built by the project
        [sys.executable, "-m", "dvc", *args],
        cwd=repo, capture_output=not shown, text=True, check=False,
        env=None if env is None else dict(env),
    )  # fmt: skip
    if done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip().splitlines()
        last = detail[-1] if detail else "see DVC's messages above"
        raise error(f"dvc {' '.join(args)} failed (exit status {done.returncode}): {last}")
    return done.stdout or ""


def dvc_json(args: list[str], repo: Path) -> dict[str, Any]:
    """``dvc <args> --json`` in ``repo``, parsed."""
    data: dict[str, Any] = json.loads(dvc([*args, "--json"], repo) or "{}")
    return data


def file_md5(path: str | Path) -> str:
    """The md5 DVC 3 records for a file output (``hash: md5``): the md5 of its bytes, read in
    chunks. It ties a tracked run, a Bento and dvc.lock to one model file."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
