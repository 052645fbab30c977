"""The Git state of a work tree: which commit, and whether tracked files differ from it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from flightdelay.core.errors import StageError


def git(repo: Path, *args: str) -> str:
    """Run ``git <args>`` in ``repo``; its stdout, stripped.

    Raises:
        StageError: naming the command, the folder and git's message.
    """
    cmd = ["git", *args]  # noqa: S607 - git from PATH, like DVC itself
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise StageError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class GitState:
    """The commit checked out and whether tracked files differ from it."""

    sha: str
    dirty: bool

    @property
    def sha7(self) -> str:
        return self.sha[:7]


def state(repo: Path) -> GitState:
    """The commit of ``repo`` and whether its tracked files are modified.

    Raises:
        StageError: ``repo`` is not a Git work tree with a commit.
    """
    return GitState(
        git(repo, "rev-parse", "HEAD"), bool(git(repo, "status", "--porcelain", "-uno"))
    )


def head_sha(repo: Path) -> str:
    """The full SHA of the commit checked out in ``repo``; "unknown" outside Git."""
    try:
        return git(repo, "rev-parse", "HEAD")
    except StageError:
        return "unknown"
