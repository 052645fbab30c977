"""The fitted Pipeline compiled to plain arrays: the same probabilities without its per-call cost.

The sklearn Pipeline spends milliseconds per call on validation, DataFrames and thread start-up
while the arithmetic of one flight takes microseconds. ``compile_pipeline`` reads the fitted
state of a supported Pipeline and returns a ``FastModel`` that repeats that arithmetic:

* features: ``FlightFeatures``' own fitted lookups (category codes, aircraft, holidays), applied
  row by row in plain Python for small inputs and through ``FlightFeatures.transform`` for large;
* ``HistGradientBoostingClassifier``: every node of every tree in flat arrays. Small inputs
  decide all nodes in one vectorised step, then walk all trees at once, one level per step;
  large inputs go through sklearn's compiled per-tree traversal, skipping the Pipeline around it;
* ``LogisticRegression`` behind the imputer/scaler/one-hot ``ColumnTransformer``: one affine map.

Missing values, categorical bitsets and unknown categories follow sklearn's rules exactly; the
Pipeline stays the reference and the tests hold the two to 1e-6 on whole test sets.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from flightdelay.model import FEATURES, WEATHER, FlightFeatures
from flightdelay.schema import CATEGORICAL, RECORD_COLUMNS

log = logging.getLogger(__name__)

Record = Mapping[str, Any]
Matrix = NDArray[np.float64]

#: inputs up to this many rows take the row-by-row features and the all-nodes tree walk
SMALL_ROWS = 4
#: inputs from this many rows use every core in sklearn's tree traversal
PARALLEL_ROWS = 2000
_EPOCH = dt.date(1970, 1, 1).toordinal()
_MISSING_SLOT = 256  # categorical values are < 256 (HGB's max_bins); this slot means missing


def _sigmoid(raw: Matrix) -> Matrix:
    proba: Matrix = 1.0 / (1.0 + np.exp(-raw))
    return proba


def _minutes(hhmm: Any) -> float:
    clock = float(hhmm)
    return (clock // 100) * 60 + clock % 100


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def record_features(ff: FlightFeatures, records: Sequence[Record]) -> Matrix:
    """``ff.transform`` of flight records, computed row by row (fast for a few rows).

    Same arithmetic as ``FlightFeatures.transform``: a day past the month's end rolls over like
    numpy's datetime64, clock times use float floor division and remainder.
    """
    holidays = ff.holidays_.tolist()
    last = len(holidays) - 1
    missing = (math.nan, math.nan, math.nan)
    rows = []
    for r in records:
        dep, arr = _minutes(r["sched_dep_time"]), _minutes(r["sched_arr_time"])
        first = dt.date(int(r["year"]), int(r["month"]), 1).toordinal() - _EPOCH
        days = first + int(r["day"]) - 1
        pos = bisect.bisect_left(holidays, days)
        near = min(abs(days - holidays[max(pos - 1, 0)]), abs(holidays[min(pos, last)] - days))
        row = [dep, arr, (arr - dep) % 1440, (days + 3) % 7, near, float(r["distance"])]
        row += [_float(r.get(name)) for name in WEATHER]
        row += ff.planes_.get(r.get("tailnum"), missing)
        row += [ff.categories_[col].get(r[col], math.nan) for col in CATEGORICAL]
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


_FIELDS = operator.itemgetter(*RECORD_COLUMNS)


def columns_features(ff: FlightFeatures, records: Sequence[Record]) -> Matrix:
    """``ff.transform`` of flight records through columns of plain tuples (fast for many rows).

    Records with every field (``Flight`` values, as the API passes them) are read with one
    C-level ``itemgetter`` call each; records missing optional fields read those as None.
    """
    try:
        rows = [_FIELDS(r) for r in records]
    except KeyError:
        rows = [tuple(r.get(name) for name in RECORD_COLUMNS) for r in records]
    columns = dict(zip(RECORD_COLUMNS, zip(*rows, strict=True), strict=True))
    return np.asarray(ff.transform(columns), dtype=np.float64)


class Scorer(Protocol):
    def proba(self, X: Matrix) -> Matrix:  # noqa: N803
        """Probability of the positive class for rows of ``FlightFeatures`` output."""


class FastModel:
    """Features plus a compiled scorer: ``predict_records`` equals the Pipeline's probabilities."""

    def __init__(self, features: FlightFeatures, scorer: Scorer) -> None:
        self.features = features
        self.scorer = scorer

    def predict_records(self, records: Sequence[Record]) -> Matrix:
        """Probability that each flight (a mapping of ``Flight`` fields) arrives late."""
        build = record_features if len(records) <= SMALL_ROWS else columns_features
        return self.scorer.proba(build(self.features, records))


def _encode(values: Matrix, categories: Matrix) -> Matrix:
    """OrdinalEncoder(unknown -> NaN, missing -> NaN) of one column."""
    if len(categories) == 0:
        return np.full(len(values), np.nan)
    pos = np.minimum(np.searchsorted(categories, values), len(categories) - 1)
    return np.where(categories[pos] == values, pos.astype(np.float64), np.nan)


def _unpack(bitsets: NDArray[np.uint32]) -> NDArray[np.bool_]:
    """sklearn's (n, 8) uint32 bitsets -> (n, 256) booleans, bit v of word v // 32 at column v."""
    raw = np.ascontiguousarray(bitsets, dtype="<u4").view(np.uint8)
    return np.unpackbits(raw, axis=1, bitorder="little").astype(bool)


class CompiledTrees:
    """A fitted binary HistGradientBoostingClassifier as flat arrays over all of its nodes."""

    def __init__(self, clf: HistGradientBoostingClassifier) -> None:
        self.trees = [iteration[0] for iteration in clf._predictors]
        self.baseline = float(np.ravel(clf._baseline_prediction)[0])
        self.known_bitsets, self.f_idx_map = clf._bin_mapper.make_known_categories_bitsets()
        self.order, self.encoders = self._layout(clf)
        self._flatten(_unpack(self.known_bitsets))

    @staticmethod
    def _layout(clf: HistGradientBoostingClassifier) -> tuple[list[int], list[Matrix]]:
        """Input column of each tree feature, and the category encoders of the leading ones."""
        pre = clf._preprocessor
        if pre is None:
            return list(range(clf.n_features_in_)), []
        encoder_mask, numeric_mask = pre.transformers_[0][2], pre.transformers_[1][2]
        order = np.flatnonzero(encoder_mask).tolist() + np.flatnonzero(numeric_mask).tolist()
        cats = pre.named_transformers_["encoder"].categories_
        return order, [np.asarray(c, dtype=np.float64) for c in cats]

    def _flatten(self, known: NDArray[np.bool_]) -> None:
        nodes = np.concatenate([t.nodes for t in self.trees])
        sizes = [len(t.nodes) for t in self.trees]
        start = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
        leaf, cat = nodes["is_leaf"].astype(bool), nodes["is_categorical"].astype(bool)
        num = ~leaf & ~cat
        # numeric nodes first, categorical next, leaves last: one concatenation builds "next"
        perm = np.concatenate(
            [np.flatnonzero(num), np.flatnonzero(cat & ~leaf), np.flatnonzero(leaf)]
        )
        relabel = np.empty(len(nodes), dtype=np.intp)
        relabel[perm] = np.arange(len(nodes))
        n_feat, p = len(self.order), nodes[perm]
        left, right = relabel[p["left"] + start[perm]], relabel[p["right"] + start[perm]]
        self.n_num, self.n_cat = int(num.sum()), int((cat & ~leaf).sum())
        numeric, categorical = slice(0, self.n_num), slice(self.n_num, self.n_num + self.n_cat)
        # NaN goes left: read it as -inf; NaN goes right: NaN <= t is False (t may be +inf)
        self.num_col = p["feature_idx"][numeric] + n_feat * (1 - p["missing_go_to_left"][numeric])
        self.num_thr = p["num_threshold"][numeric]
        self.num_lr = left[numeric], right[numeric]
        self.cat_col, self.cat_lr = (
            p["feature_idx"][categorical],
            (left[categorical], right[categorical]),
        )
        self.cat_table = self._cat_table(p[categorical], perm[categorical], known)
        self.leaves = np.arange(self.n_num + self.n_cat, len(nodes))
        self.values, self.roots = p["value"], relabel[np.cumsum([0, *sizes[:-1]])]
        self.depth = int(nodes["depth"].max())

    def _cat_table(
        self, p: NDArray[Any], original: NDArray[np.intp], known: NDArray[np.bool_]
    ) -> NDArray[np.bool_]:
        """Per categorical node and value 0..255 (+ missing): does the row go left?"""
        tree_of = np.searchsorted(np.cumsum([len(t.nodes) for t in self.trees]), original, "right")
        raw = [
            self.trees[t].raw_left_cat_bitsets[b]
            for t, b in zip(tree_of, p["bitset_idx"], strict=True)
        ]
        in_left = _unpack(np.asarray(raw, dtype=np.uint32).reshape(len(p), 8))
        is_known = known[self.f_idx_map[p["feature_idx"]]]
        missing_left = p["missing_go_to_left"].astype(bool)[:, None]
        go_left = in_left | (~is_known & missing_left)  # unknown categories count as missing
        return np.concatenate([go_left, missing_left], axis=1)

    def tree_input(self, X: Matrix) -> Matrix:  # noqa: N803
        """FlightFeatures output -> the classifier's own column order and category codes."""
        out = X[:, self.order]
        for j, categories in enumerate(self.encoders):
            out[:, j] = _encode(out[:, j], categories)
        return out

    def proba(self, X: Matrix) -> Matrix:  # noqa: N803
        Xt = self.tree_input(X)  # noqa: N806
        raw = self._walk(Xt) if len(Xt) <= SMALL_ROWS else self._per_tree(Xt)
        return _sigmoid(raw)

    def _walk(self, Xt: Matrix) -> Matrix:  # noqa: N803
        """All nodes decided at once, then every tree walked in lockstep, one level per step."""
        n, n_nodes = len(Xt), len(self.values)
        both = np.concatenate([np.where(np.isnan(Xt), -np.inf, Xt), Xt], axis=1)
        go_num = both[:, self.num_col] <= self.num_thr
        slots = Xt[:, self.cat_col]
        slots = np.where(np.isnan(slots) | (slots < 0), _MISSING_SLOT, slots).astype(np.intp)
        go_cat = self.cat_table[np.arange(self.n_cat), slots]
        parts = (np.where(go_num, *self.num_lr), np.where(go_cat, *self.cat_lr))
        nxt = np.concatenate([*parts, np.broadcast_to(self.leaves, (n, len(self.leaves)))], axis=1)
        offsets = (np.arange(n) * n_nodes)[:, None]
        flat, idx = (nxt + offsets).ravel(), self.roots + offsets
        for _ in range(self.depth):
            idx = flat[idx]
        raw: Matrix = self.baseline + self.values[idx - offsets].sum(axis=1)
        return raw

    def _per_tree(self, Xt: Matrix) -> Matrix:  # noqa: N803
        """sklearn's compiled traversal, tree by tree, without the Pipeline's overhead."""
        threads = 1 if len(Xt) < PARALLEL_ROWS else _openmp_effective_n_threads()
        raw = np.full(len(Xt), self.baseline)
        for tree in self.trees:
            raw += tree.predict(Xt, self.known_bitsets, self.f_idx_map, threads)
        return raw


class CompiledLinear:
    """Imputer + scaler on numerics, imputer + one-hot on categories, then logistic regression."""

    def __init__(self, prep: ColumnTransformer, clf: LogisticRegression) -> None:
        (_, num, self.num_cols), (_, cat, self.cat_cols) = prep.transformers_[:2]
        imputer, scaler = num[0], num[1]
        coef = np.ravel(clf.coef_)
        w_num, w_cat = coef[: len(self.num_cols)], coef[len(self.num_cols) :]
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        self.fill = np.asarray(imputer.statistics_, dtype=np.float64)
        self.weights = w_num / scaler.scale_
        self.intercept = float(clf.intercept_[0]) - float(np.sum(mean * self.weights))
        self.cat_fill = float(cat[0].statistics_[0])
        self.categories = [np.asarray(c, dtype=np.float64) for c in cat[1].categories_]
        bounds = np.cumsum([0, *(len(c) for c in self.categories)])
        self.cat_weights = [w_cat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def proba(self, X: Matrix) -> Matrix:  # noqa: N803
        numeric = X[:, self.num_cols]
        raw = self.intercept + np.where(np.isnan(numeric), self.fill, numeric) @ self.weights
        for col, cats, weights in zip(
            self.cat_cols, self.categories, self.cat_weights, strict=True
        ):
            values = np.nan_to_num(X[:, col], nan=self.cat_fill)
            code = _encode(values, cats)
            known = ~np.isnan(code)
            raw = raw + np.where(known, weights[np.where(known, code, 0).astype(np.intp)], 0.0)
        return _sigmoid(raw)


def _linear_unsupported(prep: Any, clf: Any) -> str | None:
    """Why the steps are not the logreg candidate's imputer/scaler/one-hot layout, or None."""
    if not isinstance(prep, ColumnTransformer) or not isinstance(clf, LogisticRegression):
        return "not a ColumnTransformer + LogisticRegression"
    names = [name for name, _, _ in prep.transformers_]
    dropped = all(step == "drop" for _, step, _ in prep.transformers_[2:])
    if names[:2] != ["num", "cat"] or not dropped or clf.coef_.shape[0] != 1:
        return f"unexpected transformers {names} or a multi-class model"
    num, cat = prep.transformers_[0][1], prep.transformers_[1][1]
    if np.isnan(num[0].statistics_).any() or not num[1].with_mean or not num[1].with_std:
        return "an all-missing numeric column or a scaler without centring/scaling"
    one_hot = cat[-1]
    if one_hot.drop_idx_ is not None or getattr(one_hot, "_infrequent_enabled", False):
        return "a one-hot encoder that drops or groups categories"
    return None


def _trees_unsupported(clf: HistGradientBoostingClassifier) -> str | None:
    if clf.n_trees_per_iteration_ != 1 or len(clf.classes_) != 2:  # noqa: PLR2004
        return "not a binary classifier"
    return None


def compile_pipeline(model: Pipeline) -> FastModel | None:
    """A ``FastModel`` for a supported fitted Pipeline; None (logged) for any other.

    Supported: FlightFeatures -> HistGradientBoostingClassifier (binary), and FlightFeatures ->
    the logreg candidate's ColumnTransformer -> LogisticRegression (binary).
    """
    steps = [step for _, step in model.steps]
    features, rest = steps[0], steps[1:]
    reason: str | None = None
    if not isinstance(features, FlightFeatures):
        reason = "the first step is not FlightFeatures"
    elif len(rest) == 1 and isinstance(rest[0], HistGradientBoostingClassifier):
        reason = _trees_unsupported(rest[0])
        if reason is None:
            return FastModel(features, CompiledTrees(rest[0]))
    elif len(rest) == 2:  # noqa: PLR2004
        reason = _linear_unsupported(*rest)
        if reason is None:
            return FastModel(features, CompiledLinear(*rest))
    else:
        reason = f"unsupported steps {[type(s).__name__ for s in rest]}"
    log.warning("no compiled path for this model (%s): using the sklearn Pipeline", reason)
    return None
