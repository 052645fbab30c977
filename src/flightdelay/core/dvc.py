"""DVC commands of this environment, run in a repository: their output, or one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from flightdelay.core.errors import StageError


def dvc(args: list[str], repo: Path, error: type[StageError] = StageError) -> str:
    """Run ``dvc <args>`` (the DVC of this interpreter) in ``repo``; its stdout.

    Raises:
        StageError: (or ``error``) naming the command and DVC's last line of output.
    """
    done = subprocess.run(  # noqa: S603 - this interpreter, arguments built by the project
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise error(f"dvc {' '.join(args)} failed: {detail[-1] if detail else '(no output)'}")
    return done.stdout


def dvc_json(args: list[str], repo: Path) -> dict[str, Any]:
    """``dvc <args> --json`` in ``repo``, parsed."""
    data: dict[str, Any] = json.loads(dvc([*args, "--json"], repo) or "{}")
    return data
