"""The unfitted model: one sklearn Pipeline per candidate, built by a registry of factories.

Every candidate starts with ``FlightFeatures``, which turns flight records (the ``Flight`` fields)
into a numeric matrix. It is fitted with the model and pickled inside it, so training, evaluation,
benchmark and the API all derive features through the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.tseries.holiday import USFederalHolidayCalendar
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flightdelay.contract.feature_table import FEATURES, NUMERIC, Columns, FeatureTable, Matrix
from flightdelay.contract.schema import CATEGORICAL
from flightdelay.core.params import HGBParams, LogRegParams

CATEGORICAL_IDX = [FEATURES.index(c) for c in CATEGORICAL]
NUMERIC_IDX = [FEATURES.index(c) for c in NUMERIC]


class FlightFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Flight records -> float matrix with the columns of ``FEATURES``.

    Categorical values become integer codes learned in ``fit`` (unseen values become NaN, which
    the models treat as missing); the aircraft's year, seats and engines are looked up by tail
    number in ``planes``; the date gives the weekday and the distance in days to the nearest US
    federal holiday.

    Args:
        planes: table with columns tailnum, year, seats, engines (None: no aircraft features).
    """

    def __init__(self, planes: pd.DataFrame | None = None) -> None:
        self.planes = planes

    def fit(self, X: pd.DataFrame, y: object = None) -> FlightFeatures:  # noqa: N803
        self.categories_ = {
            col: {value: code for code, value in enumerate(sorted(pd.unique(X[col].dropna())))}
            for col in CATEGORICAL
        }
        planes = self.planes if self.planes is not None else pd.DataFrame(columns=["tailnum"])
        self.planes_ = {
            row[0]: tuple(float(v) for v in row[1:])
            for row in planes[["tailnum", "year", "seats", "engines"]].itertuples(index=False)
        }
        holidays = USFederalHolidayCalendar().holidays("1999-01-01", "2101-12-31")
        self.holidays_ = np.asarray(holidays.values.astype("datetime64[D]").astype(np.int64))
        self.n_features_in_ = len(X.columns)
        return self

    def table(self) -> FeatureTable:
        """The fitted lookups (shared, not copied) as the ``FeatureTable`` that applies them."""
        return FeatureTable(self.categories_, self.planes_, self.holidays_)

    def transform(self, X: Columns) -> Matrix:  # noqa: N803
        """Accepts a DataFrame or any mapping of column name -> sequence."""
        return self.table().transform(X)

    def get_feature_names_out(self, input_features: object = None) -> NDArray[np.object_]:
        return np.asarray(FEATURES, dtype=object)


def _hgb(params: HGBParams, seed: int, planes: pd.DataFrame | None) -> Pipeline:
    clf = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        categorical_features=CATEGORICAL_IDX,
        early_stopping=False,  # the number of trees is a param, not a side effect of the data
        random_state=seed,
    )
    return Pipeline([("features", FlightFeatures(planes)), ("classifier", clf)])


def _logreg(params: LogRegParams, seed: int, planes: pd.DataFrame | None) -> Pipeline:
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC_IDX),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                CATEGORICAL_IDX,
            ),
        ]
    )
    clf = LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=seed)
    return Pipeline([("features", FlightFeatures(planes)), ("prep", prep), ("classifier", clf)])


Factory = Callable[[Any, int, "pd.DataFrame | None"], Pipeline]

#: name in params.yaml (train.candidates) -> factory(params, seed, planes)
CANDIDATES: dict[str, Factory] = {"logreg": _logreg, "hgb": _hgb}


def build(name: str, params: object, seed: int, planes: pd.DataFrame | None) -> Pipeline:
    """An unfitted Pipeline for the candidate ``name``.

    Raises:
        KeyError: when ``name`` is not in the registry.
    """
    if name not in CANDIDATES:
        raise KeyError(f"unknown candidate {name!r}; known: {', '.join(sorted(CANDIDATES))}")
    return CANDIDATES[name](params, seed, planes)
