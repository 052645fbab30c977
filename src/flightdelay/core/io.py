"""Shared plumbing of the command entry points: logging, one-line errors, atomic writes."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flightdelay.core.errors import StageError

if TYPE_CHECKING:  # pandas loads only where frames are read: the remote and git commands skip it
    import pandas as pd

log = logging.getLogger(__name__)


def setup_logging() -> None:
    """Staged, timestamped progress lines on stderr (called from ``main`` only)."""
    level = os.environ.get("FLIGHTDELAY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )


def run_main(stage: str, body: Callable[[], None]) -> int:
    """Run a stage body; a StageError (or bad params) becomes one clear line and exit status 1."""
    setup_logging()
    try:
        body()
    except StageError as exc:  # ParamsError among them
        sys.stderr.write(f"{stage}: error: {exc}\n")
        return 1
    return 0


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic(Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)


def read_parquet(path: str | Path) -> pd.DataFrame:
    import pandas as pd  # noqa: PLC0415 - see the import block

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot read parquet: {exc}") from exc


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Flat JSON, sorted keys, trailing newline: stable diffs in Git and in ``dvc metrics``."""
    with atomic(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
