"""The reference prediction path: the fitted sklearn Pipeline on a frame of flight records.

Train, evaluate and benchmark score through ``predict_proba``; the compiled path
(``flightdelay.compile``) is held to it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from flightdelay.contract.feature_table import Record
from flightdelay.contract.schema import RECORD_COLUMNS


def records_frame(flights: Iterable[Record]) -> pd.DataFrame:
    """Flight records (e.g. ``Flight.model_dump()`` dicts) as a frame in contract column order."""
    return pd.DataFrame.from_records(list(flights), columns=list(RECORD_COLUMNS))


def predict_proba(model: Pipeline, records: pd.DataFrame) -> NDArray[np.float64]:
    """Probability that each flight arrives late, from the fitted Pipeline (the reference path)."""
    proba: NDArray[np.float64] = model.predict_proba(records)[:, 1]
    return proba
