"""A fitted Pipeline ready for plain records, scored through its compiled form.

``Predictor`` is for callers that hold flight dicts rather than frames (the benchmark's compiled
path, the tests): it compiles the Pipeline to a ``serving.runtime.ServingModel``
(``compile.compiler``), which gives the same probabilities without the Pipeline's per-call
overhead, and falls back to the reference ``model.predict.predict_proba`` for a model the
compiler does not support. The API loads the saved ``ServingModel`` itself, without this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from flightdelay.compile.compiler import compile_pipeline
from flightdelay.contract.feature_table import Record
from flightdelay.model.predict import predict_proba, records_frame
from flightdelay.model.store import load_model
from flightdelay.serving.runtime import ServingModel


class Predictor:
    """A fitted Pipeline ready for records: ``predict_records`` takes a list of flight dicts.

    Compiled once at construction; one instance may serve concurrent callers.

    Args:
        model: the fitted Pipeline (stays available as ``model``, the reference).
        threads: cores the compiled trees may use on large inputs (default: every core).
        compiled: False scores through the Pipeline itself (what the API does for a model
            without a saved ``ServingModel``; compiling needs the ``onnx`` package).
        native: the trees also compiled to native code (``compile.native``), for bulk work.
    """

    def __init__(
        self,
        model: Pipeline,
        threads: int | None = None,
        *,
        compiled: bool = True,
        native: bool = False,
    ) -> None:
        self.model = model
        self.fast: ServingModel | None = (
            compile_pipeline(model, threads, native=native) if compiled else None
        )

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        threads: int | None = None,
        *,
        compiled: bool = True,
        native: bool = False,
    ) -> Predictor:
        return cls(load_model(path), threads, compiled=compiled, native=native)

    @property
    def categories(self) -> dict[str, dict[Any, int]]:
        """The category code tables of the fitted ``FlightFeatures`` step."""
        codes: dict[str, dict[Any, int]] = self.model.named_steps["features"].categories_
        return codes

    def predict_frame(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        """Probabilities for a DataFrame of flight records (column-wise, no per-row objects)."""
        if self.fast is None:
            return predict_proba(self.model, frame)
        return self.fast.predict_columns(cast("Mapping[str, Any]", frame))

    def predict_records(self, flights: Sequence[Record]) -> NDArray[np.float64]:
        """Probabilities for flight records given as mappings of the ``Flight`` fields."""
        if not flights:
            return np.empty(0, dtype=np.float64)
        if self.fast is None:
            return predict_proba(self.model, records_frame(flights))
        return self.fast.predict_records(flights)
