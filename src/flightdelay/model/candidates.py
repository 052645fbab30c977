"""The unfitted model: one sklearn Pipeline per candidate, built by a registry of factories.

Every candidate starts with ``FlightFeatures``, which turns flight records (the ``Flight`` fields)
into a numeric matrix. It is fitted with the model and pickled inside it, so training, evaluation,
benchmark and the API all derive features through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

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

from flightdelay.contract.feature_table import (
    FEATURES,
    HISTORY,
    NUMERIC,
    Columns,
    FeatureTable,
    Matrix,
)
from flightdelay.contract.schema import CATEGORICAL
from flightdelay.core.params import HGBParams, HistoryParams, LogRegParams

CATEGORICAL_IDX = [FEATURES.index(c) for c in CATEGORICAL]
NUMERIC_IDX = [FEATURES.index(c) for c in NUMERIC]
HISTORY_IDX = [FEATURES.index(c) for c in HISTORY]


def delay_rates(
    keys: Mapping[str, Sequence[str] | NDArray[np.object_]],
    y: NDArray[np.bool_],
    smoothing: float,
    prior: float,
) -> dict[str, dict[str, float]]:
    """Per feature, key -> (delayed + smoothing * prior) / (flights + smoothing)."""
    rates = {}
    for name, column in keys.items():
        counts = pd.DataFrame({"key": column, "y": y}).groupby("key", sort=True)["y"]
        total, n = counts.sum(), counts.size()
        rate = (total + smoothing * prior) / (n + smoothing)
        rates[name] = {str(k): float(v) for k, v in rate.items()}
    return rates


class FlightFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Flight records -> float matrix with the columns of ``FEATURES``.

    Categorical values become integer codes learned in ``fit`` (unseen values become NaN, which
    the models treat as missing); the aircraft's year, seats and engines are looked up by tail
    number in ``planes``; the date gives the weekday and the distance in days to the nearest US
    federal holiday. With ``history`` enabled, ``fit`` also learns the smoothed delay rate of
    each route, carrier at origin, departure hour and weekday from the labels it is given
    (``HISTORY``). A row the model is fitted on must not see its own label, so
    ``fit_transform`` gives those rows out-of-fold rates: each fold's rates come from the other
    folds (seeded by ``seed``); ``transform`` (validation, test, the API) uses the rates of all
    the fitted rows.

    Args:
        planes: table with columns tailnum, year, seats, engines (None: no aircraft features).
        smoothing: pseudo-flights at the overall rate per key (None: no history features).
        folds: folds of the out-of-fold rates.
        seed: draws the folds.

    Plain numbers, not the params object: the fitted model must pickle to the same bytes in
    every process (a pydantic model pickles a set, whose order changes with the hash seed).
    """

    def __init__(
        self,
        planes: pd.DataFrame | None = None,
        smoothing: float | None = None,
        folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.planes = planes
        self.smoothing = smoothing
        self.folds = folds
        self.seed = seed

    def _uses_history(self, y: object) -> bool:
        return self.smoothing is not None and y is not None

    def fit(self, X: pd.DataFrame, y: object = None) -> FlightFeatures:  # noqa: N803
        self._fit(X, y)
        return self

    def _fit(self, X: pd.DataFrame, y: object) -> tuple[Matrix, dict[str, NDArray[np.object_]]]:  # noqa: N803
        """Learn the lookups; the features of ``X`` with them (history rates in-sample), and
        the history key of each row (none without history)."""
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
        self.history_: dict[str, dict[str, float]] = {}
        self.prior_ = float("nan")
        keys: dict[str, NDArray[np.object_]] = {}
        if self._uses_history(y):
            labels = np.asarray(y, dtype=bool)
            self.prior_ = float(labels.mean())
            found = self.table().history_keys(cast("Columns", X))
            keys = {name: np.asarray(column, dtype=object) for name, column in found.items()}
            self.history_ = delay_rates(keys, labels, float(self.smoothing or 0), self.prior_)
        self.unused_: tuple[str, ...] = ()
        out = self.table().transform(cast("Columns", X))
        missing = np.asarray(np.isnan(out).all(axis=0), dtype=bool)
        self.unused_ = tuple(FEATURES[i] for i in np.flatnonzero(missing))
        out[:, missing] = 0.0  # what ``FeatureTable`` does with ``unused`` from now on
        self.n_features_in_ = len(X.columns)
        return out, keys

    def fit_transform(
        self,
        X: pd.DataFrame,  # noqa: N803
        y: object = None,
        **fit_params: object,
    ) -> Matrix:
        """``fit``, then the features of ``X`` with out-of-fold history rates (see the class)."""
        out, keys = self._fit(X, y)
        if not keys or set(HISTORY) <= set(self.unused_):
            return out
        smoothing = float(self.smoothing or 0)
        labels = np.asarray(y, dtype=bool)
        folds = np.random.default_rng(self.seed).permutation(len(labels)) % self.folds
        for k in range(self.folds):
            held, rest = folds == k, folds != k
            prior = float(labels[rest].mean())
            rest_keys = {n: col[rest] for n, col in keys.items()}
            rates = delay_rates(rest_keys, labels[rest], smoothing, prior)
            fold = FeatureTable(self.categories_, {}, self.holidays_, rates, prior, self.unused_)
            for j, name in zip(HISTORY_IDX, HISTORY, strict=True):
                out[held, j] = fold.rates(name, list(keys[name][held]))
        return out

    def table(self) -> FeatureTable:
        """The fitted lookups (shared, not copied) as the ``FeatureTable`` that applies them."""
        history = getattr(self, "history_", {})
        return FeatureTable(
            self.categories_,
            self.planes_,
            self.holidays_,
            history,
            getattr(self, "prior_", float("nan")),
            getattr(self, "unused_", ()),
        )

    def transform(self, X: Columns) -> Matrix:  # noqa: N803
        """Accepts a DataFrame or any mapping of column name -> sequence."""
        return self.table().transform(X)

    def get_feature_names_out(self, input_features: object = None) -> NDArray[np.object_]:
        return np.asarray(FEATURES, dtype=object)


def _features(
    planes: pd.DataFrame | None, history: HistoryParams | None, seed: int
) -> FlightFeatures:
    if history is None or not history.enabled:
        return FlightFeatures(planes, None, seed=seed)
    return FlightFeatures(planes, history.smoothing, history.folds, seed)


def _hgb(
    params: HGBParams, seed: int, planes: pd.DataFrame | None, history: HistoryParams | None
) -> Pipeline:
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
    return Pipeline([("features", _features(planes, history, seed)), ("classifier", clf)])


def _logreg(
    params: LogRegParams, seed: int, planes: pd.DataFrame | None, history: HistoryParams | None
) -> Pipeline:
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
    features = _features(planes, history, seed)
    return Pipeline([("features", features), ("prep", prep), ("classifier", clf)])


Factory = Callable[[Any, int, "pd.DataFrame | None", "HistoryParams | None"], Pipeline]

#: name in params.yaml (train.candidates) -> factory(params, seed, planes, history)
CANDIDATES: dict[str, Factory] = {"logreg": _logreg, "hgb": _hgb}


def build(
    name: str,
    params: object,
    seed: int,
    planes: pd.DataFrame | None,
    history: HistoryParams | None = None,
) -> Pipeline:
    """An unfitted Pipeline for the candidate ``name`` (``history``: its delay-rate features).

    Raises:
        KeyError: when ``name`` is not in the registry.
    """
    if name not in CANDIDATES:
        raise KeyError(f"unknown candidate {name!r}; known: {', '.join(sorted(CANDIDATES))}")
    return CANDIDATES[name](params, seed, planes, history)
