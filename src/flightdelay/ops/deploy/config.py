"""``deploy/environments.yaml`` as frozen, typed models: a typo or a bad value fails at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdelay.core.errors import StageError

Colour = Literal["blue", "green"]
COLOURS: tuple[Colour, Colour] = ("blue", "green")
Port = Annotated[int, Field(ge=1024, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


class DeployError(StageError):
    """A deploy, rollback or status that cannot go on: the message says why and where."""


class Environment(BaseModel):
    """One environment: its proxy port, its colours' ports and the rules of a deploy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    port: Port
    colours: dict[Colour, Port]
    requires: str | None = None
    steps: tuple[Annotated[int, Field(gt=0, le=100)], ...] = (10, 50, 100)
    step_s: Seconds = 10
    watch_s: Seconds = 30
    max_error_rate: Annotated[float, Field(ge=0, lt=1)] = 0.01
    max_p99_ms: Seconds = 250
    min_requests: Annotated[int, Field(ge=1)] = 20
    probe_rate: Annotated[float, Field(gt=0, le=500)] = 20
    ready_timeout_s: Seconds = 120
    workers: Annotated[int, Field(ge=1, le=64)] = 2

    @model_validator(mode="after")
    def _check(self) -> Environment:
        if set(self.colours) != set(COLOURS):
            raise ValueError(f"colours must be exactly {list(COLOURS)}")
        ports = [self.port, *self.colours.values()]
        if len(set(ports)) != len(ports):
            raise ValueError(f"the proxy and the colours need distinct ports, not {ports}")
        if list(self.steps) != sorted(set(self.steps)) or self.steps[-1] != 100:  # noqa: PLR2004
            raise ValueError(f"steps must rise and end at 100, not {list(self.steps)}")
        return self


def load_environments(path: Path) -> dict[str, Environment]:
    """Every environment of ``path``, each with the ``defaults`` section under its own keys.

    Raises:
        DeployError: the file is missing, not YAML, or an environment is not valid.
    """
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"{path}: cannot read the environments: {exc}") from exc
    if not isinstance(raw, dict):
        raise DeployError(f"{path}: expected a mapping of environment name -> settings")
    defaults = raw.pop("defaults", {}) or {}
    found: dict[str, Environment] = {}
    for name, section in raw.items():
        try:
            found[name] = Environment(name=name, **{**defaults, **(section or {})})
        except (ValidationError, TypeError) as exc:
            raise DeployError(f"{path}: environment {name!r}: {exc}") from exc
    for env in found.values():
        if env.requires is not None and env.requires not in found:
            raise DeployError(f"{path}: {env.name} requires {env.requires!r}, not defined here")
    return found


def environment(path: Path, name: str) -> Environment:
    """The environment ``name`` of ``path``, or a DeployError naming the ones there are."""
    found = load_environments(path)
    if name not in found:
        raise DeployError(f"{path}: no environment {name!r} (there are: {', '.join(found)})")
    return found[name]
