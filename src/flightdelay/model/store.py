"""The fitted Pipeline on disk: written atomically, read back with a clear error."""

from __future__ import annotations

from pathlib import Path

import joblib
from sklearn.pipeline import Pipeline

from flightdelay.core.errors import StageError
from flightdelay.core.io import atomic


def save_model(model: Pipeline, path: str | Path) -> None:
    with atomic(Path(path)) as tmp:
        joblib.dump(model, tmp, compress=3)


def load_model(path: str | Path) -> Pipeline:
    """Load a fitted Pipeline written by ``save_model`` (a trusted, project-made file)."""
    try:
        model = joblib.load(path)
    except (OSError, EOFError, ValueError) as exc:
        raise StageError(f"{path}: cannot load model: {exc}") from exc
    if not isinstance(model, Pipeline):
        raise StageError(f"{path}: expected a sklearn Pipeline, got {type(model).__name__}")
    return model
