"""The fitted Pipeline compiled to a ``runtime.ServingModel``: same probabilities, none of its cost.

The sklearn Pipeline spends milliseconds per call on validation, DataFrames and thread start-up
while the arithmetic of one flight takes microseconds. ``compile_pipeline`` reads the fitted
state of a supported Pipeline:

* ``FlightFeatures``: its fitted lookups become a ``runtime.FeatureTable`` (shared, not copied);
* ``HistGradientBoostingClassifier``: every node of every tree is written into one ONNX
  ``TreeEnsemble`` (ai.onnx.ml opset 5, float64 thresholds and leaf values). Numeric splits are
  ``x <= threshold``; categorical splits are set membership over the classifier's bin codes, the
  set read from sklearn's bitsets; missing values (and unknown categories) follow each node's
  ``missing_go_to_left``, exactly as sklearn does;
* ``LogisticRegression`` behind the imputer/scaler/one-hot ``ColumnTransformer``: one affine map.

The Pipeline stays the reference; the tests hold the two to 1e-6 on whole test sets.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from flightdelay.model import FlightFeatures
from flightdelay.runtime import FeatureTable, LinearScorer, ServingModel, TreeScorer

log = logging.getLogger(__name__)

Matrix = NDArray[np.float64]
_LEQ, _MEMBER = 0, 6  # TreeEnsemble node modes: x <= split, x in the node's membership set
_ONNX_OPSETS = (("", 21), ("ai.onnx.ml", 5))


def _unpack(bitsets: NDArray[np.uint32]) -> NDArray[np.bool_]:
    """sklearn's (n, 8) uint32 bitsets -> (n, 256) booleans, bit v of word v // 32 at column v."""
    raw = np.ascontiguousarray(bitsets, dtype="<u4").view(np.uint8)
    return np.unpackbits(raw, axis=1, bitorder="little").astype(bool)


def _layout(clf: HistGradientBoostingClassifier) -> tuple[list[int], list[Matrix]]:
    """Input column of each tree feature, and the category encoders of the leading ones."""
    pre = clf._preprocessor
    if pre is None:
        return list(range(clf.n_features_in_)), []
    encoder_mask, numeric_mask = pre.transformers_[0][2], pre.transformers_[1][2]
    order = np.flatnonzero(encoder_mask).tolist() + np.flatnonzero(numeric_mask).tolist()
    cats = pre.named_transformers_["encoder"].categories_
    return order, [np.asarray(c, dtype=np.float64) for c in cats]


def _tree_nodes(clf: HistGradientBoostingClassifier) -> dict[str, Any]:
    """The attributes of one TreeEnsemble node holding every tree of a binary classifier.

    Internal nodes keep sklearn's order across trees and leaves are numbered separately; a tree
    that is a single leaf gets one always-true split whose both branches reach that leaf.
    """
    trees = [iteration[0] for iteration in clf._predictors]
    nodes = np.concatenate([t.nodes for t in trees])
    sizes = np.array([len(t.nodes) for t in trees])
    firsts = np.cumsum(sizes) - sizes
    leaf = nodes["is_leaf"].astype(bool)
    ids = np.where(leaf, np.cumsum(leaf) - 1, np.cumsum(~leaf) - 1)  # leaf id or internal id
    inner = np.flatnonzero(~leaf)
    first = np.repeat(firsts, sizes)[inner]
    left, right = nodes["left"][inner] + first, nodes["right"][inner] + first
    p = nodes[inner]
    categorical = p["is_categorical"].astype(bool)
    missing_left = p["missing_go_to_left"].astype(bool)
    # each categorical node's left set: its bitset, plus the bins the data never showed when
    # missing values go left (sklearn treats unknown categories as missing)
    bitsets = np.concatenate([t.raw_left_cat_bitsets.reshape(-1, 8) for t in trees])
    n_bitsets = np.array([len(t.raw_left_cat_bitsets) for t in trees])
    bitset_first = np.repeat(np.cumsum(n_bitsets) - n_bitsets, sizes)[inner]
    known, f_idx_map = clf._bin_mapper.make_known_categories_bitsets()
    rows = (p["bitset_idx"] + bitset_first)[categorical]
    unknown = ~_unpack(known)[f_idx_map[p["feature_idx"][categorical]]]
    left_sets = _unpack(bitsets[rows]) | (unknown & missing_left[categorical, None])
    members = [v for s in left_sets for v in (*np.flatnonzero(s).astype(np.float64), np.nan)]
    stumps = np.flatnonzero(leaf[firsts])
    n_stumps = len(stumps)
    roots = ids[firsts]
    roots[stumps] = np.arange(len(inner), len(inner) + n_stumps)
    to_leaf, ones = ids[firsts[stumps]].tolist(), [1] * n_stumps
    attributes: dict[str, Any] = {
        "tree_roots": roots.tolist(),
        "nodes_featureids": [*p["feature_idx"].tolist(), *[0] * n_stumps],
        "nodes_modes": np.concatenate(
            [np.where(categorical, _MEMBER, _LEQ), np.full(n_stumps, _LEQ)]
        ).astype(np.uint8),
        "nodes_splits": np.concatenate(
            [np.where(categorical, 0.0, p["num_threshold"]), np.full(n_stumps, np.inf)]
        ),
        "nodes_missing_value_tracks_true": [*missing_left.astype(int).tolist(), *ones],
        "nodes_truenodeids": [*ids[left].tolist(), *to_leaf],
        "nodes_trueleafs": [*leaf[left].astype(int).tolist(), *ones],
        "nodes_falsenodeids": [*ids[right].tolist(), *to_leaf],
        "nodes_falseleafs": [*leaf[right].astype(int).tolist(), *ones],
        "leaf_targetids": [0] * int(leaf.sum()),
        "leaf_weights": nodes["value"][leaf].astype(np.float64),
    }
    if members:  # one set per categorical node, in node order, each closed by a NaN
        attributes["membership_values"] = np.asarray(members, dtype=np.float64)
    return attributes


def trees_onnx(clf: HistGradientBoostingClassifier, n_inputs: int) -> bytes:
    """The classifier's trees as a serialized ONNX model: ``X`` (n, n_inputs) float64 -> raw
    score (n, 1) float64, without the baseline."""
    from onnx import TensorProto, checker, helper, numpy_helper  # noqa: PLC0415 - compile only

    attributes = {
        name: numpy_helper.from_array(value) if isinstance(value, np.ndarray) else value
        for name, value in _tree_nodes(clf).items()
    }
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, **attributes
    )
    graph = helper.make_graph(
        [node],
        "flight_delay_trees",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_inputs])],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in _ONNX_OPSETS]
    )
    checker.check_model(model)
    onnx: bytes = model.SerializeToString()
    return onnx


def _trees(clf: HistGradientBoostingClassifier, threads: int) -> TreeScorer:
    order, encoders = _layout(clf)
    baseline = float(np.ravel(clf._baseline_prediction)[0])
    return TreeScorer(trees_onnx(clf, len(order)), order, encoders, baseline, threads)


def _linear(prep: ColumnTransformer, clf: LogisticRegression) -> LinearScorer:
    (_, num, num_cols), (_, cat, cat_cols) = prep.transformers_[:2]
    imputer, scaler = num[0], num[1]
    coef = np.ravel(clf.coef_)
    w_num, w_cat = coef[: len(num_cols)], coef[len(num_cols) :]
    mean = scaler.mean_ if scaler.mean_ is not None else 0.0
    weights = w_num / scaler.scale_
    categories = [np.asarray(c, dtype=np.float64) for c in cat[1].categories_]
    bounds = np.cumsum([0, *(len(c) for c in categories)])
    return LinearScorer(
        num_cols=list(num_cols),
        fill=np.asarray(imputer.statistics_, dtype=np.float64),
        weights=weights,
        intercept=float(clf.intercept_[0]) - float(np.sum(mean * weights)),
        cat_cols=list(cat_cols),
        cat_fill=float(cat[0].statistics_[0]),
        categories=categories,
        cat_weights=[w_cat[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
    )


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


def feature_table(features: FlightFeatures) -> FeatureTable:
    """The fitted lookups of ``FlightFeatures`` (shared with it, not copied)."""
    return FeatureTable(features.categories_, features.planes_, features.holidays_)


def compile_pipeline(model: Pipeline, threads: int | None = None) -> ServingModel | None:
    """A ``ServingModel`` for a supported fitted Pipeline; None (logged) for any other.

    Supported: FlightFeatures -> HistGradientBoostingClassifier (binary), and FlightFeatures ->
    the logreg candidate's ColumnTransformer -> LogisticRegression (binary).

    Args:
        model: the fitted Pipeline.
        threads: cores the trees may use on large inputs (default: every core).
    """
    steps = [step for _, step in model.steps]
    features, rest = steps[0], steps[1:]
    reason: str | None = None
    if not isinstance(features, FlightFeatures):
        reason = "the first step is not FlightFeatures"
    elif len(rest) == 1 and isinstance(rest[0], HistGradientBoostingClassifier):
        reason = _trees_unsupported(rest[0])
        if reason is None:
            scorer = _trees(rest[0], threads or os.cpu_count() or 1)
            return ServingModel(feature_table(features), scorer)
    elif len(rest) == 2:  # noqa: PLR2004
        reason = _linear_unsupported(*rest)
        if reason is None:
            return ServingModel(feature_table(features), _linear(*rest))
    else:
        reason = f"unsupported steps {[type(s).__name__ for s in rest]}"
    log.warning("no compiled path for this model (%s): using the sklearn Pipeline", reason)
    return None
