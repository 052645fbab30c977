"""One state file per environment: what serves, what is being deployed, and every deploy's record.

Written atomically (a new file renamed over the old), so a deploy killed at any instant leaves
either the state before a step or the state after it; ``pending`` names a colour a deploy
started and did not finish, which the next ``deploy`` or ``rollback`` stops first.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from flightdelay.core.io import atomic
from flightdelay.ops.deploy.config import Colour, DeployError

DIR_ENV = "FLIGHTDELAY_DEPLOY_DIR"
Outcome = Literal["passed", "failed", "rolled back", "interrupted"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def deploy_dir(given: Path | None = None) -> Path:
    """Where the environments keep their state, proxies and logs: ``--dir``, else
    ``$FLIGHTDELAY_DEPLOY_DIR``, else ``.deploy`` (ignored by Git)."""
    return given or Path(os.environ.get(DIR_ENV) or ".deploy")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Serving(_Model):
    """A colour's running server."""

    colour: Colour
    bento: str
    model_version: str
    pid: int


class Record(_Model):
    """One deploy or rollback, whatever its end."""

    environment: str
    action: Literal["deploy", "rollback"]
    colour: Colour
    bento: str
    model_version: str
    started: str
    finished: str
    outcome: Outcome
    reason: str = ""
    switch_s: float | None = None  # from the first weight change to 100 % on the new colour
    rollback_s: float | None = None  # from the failed check to 100 % on the old colour
    alias_version: str | None = None  # the registered model version given the alias


class State(_Model):
    environment: str
    live: Serving | None = None
    pending: Serving | None = None
    history: list[Record] = []

    def passed(self) -> list[str]:
        """The Bento tags that passed a deploy here, oldest first."""
        return [r.bento for r in self.history if r.outcome == "passed"]


def state_path(root: Path, env: str) -> Path:
    return root / env / "state.json"


def load_state(root: Path, env: str) -> State:
    """The environment's state (empty before its first deploy).

    Raises:
        DeployError: the file exists but is not a state file (it is left as it is).
    """
    path = state_path(root, env)
    if not path.exists():
        return State(environment=env)
    try:
        return State.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise DeployError(f"{path}: not a deploy state file ({exc}); move it away") from exc


def save_state(root: Path, state: State) -> None:
    with atomic(state_path(root, state.environment)) as tmp:
        tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
