"""The one prediction path used by evaluate, benchmark and the service.

``predict_proba`` is the reference: the fitted sklearn Pipeline on a DataFrame of flight records.
``Predictor`` wraps a fitted Pipeline for callers that hold plain records (benchmark's fast path,
the API when its model has no compiled form): it scores them through the Pipeline compiled to a
``runtime.ServingModel`` (``flightdelay.fastpath``), which gives the same probabilities without
the Pipeline's per-call overhead, and falls back to the reference for a model the compiler does
not support. The API loads the saved ``ServingModel`` itself, without this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from flightdelay.artifacts import load_model
from flightdelay.fastpath import compile_pipeline
from flightdelay.runtime import ServingModel
from flightdelay.schema import RECORD_COLUMNS

Record = Mapping[str, Any]


def records_frame(flights: Iterable[Record]) -> pd.DataFrame:
    """Flight records (e.g. ``Flight.model_dump()`` dicts) as a frame in contract column order."""
    return pd.DataFrame.from_records(list(flights), columns=list(RECORD_COLUMNS))


def predict_proba(model: Pipeline, records: pd.DataFrame) -> NDArray[np.float64]:
    """Probability that each flight arrives late, from the fitted Pipeline (the reference path)."""
    proba: NDArray[np.float64] = model.predict_proba(records)[:, 1]
    return proba


class Predictor:
    """A fitted Pipeline ready for records: ``predict_records`` takes a list of flight dicts.

    Compiled once at construction; one instance may serve concurrent callers.

    Args:
        model: the fitted Pipeline (stays available as ``model``, the reference).
        threads: cores the compiled trees may use on large inputs (default: every core).
        compiled: False scores through the Pipeline itself (what the API does for a model
            without a saved ``ServingModel``; compiling needs the ``onnx`` package).
    """

    def __init__(
        self, model: Pipeline, threads: int | None = None, *, compiled: bool = True
    ) -> None:
        self.model = model
        self.fast: ServingModel | None = compile_pipeline(model, threads) if compiled else None

    @classmethod
    def from_path(
        cls, path: str | Path, threads: int | None = None, *, compiled: bool = True
    ) -> Predictor:
        return cls(load_model(path), threads, compiled=compiled)

    @property
    def categories(self) -> dict[str, dict[Any, int]]:
        """The category code tables of the fitted ``FlightFeatures`` step."""
        codes: dict[str, dict[Any, int]] = self.model.named_steps["features"].categories_
        return codes

    def predict_records(self, flights: Sequence[Record]) -> NDArray[np.float64]:
        """Probabilities for flight records given as mappings of the ``Flight`` fields."""
        if not flights:
            return np.empty(0, dtype=np.float64)
        if self.fast is None:
            return predict_proba(self.model, records_frame(flights))
        return self.fast.predict_records(flights)
