"""The fitted Pipeline compiled to a ``runtime.ServingModel``: same probabilities, none of its cost.

The sklearn Pipeline spends milliseconds per call on validation, DataFrames and thread start-up
while the arithmetic of one flight takes microseconds. ``compile_pipeline`` reads the fitted
state of a supported Pipeline:

* ``FlightFeatures``: its fitted lookups, as the ``FeatureTable`` it applies itself (``table()``);
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
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from flightdelay.compile.native import build as build_native
from flightdelay.contract.feature_table import Matrix
from flightdelay.contract.schema import CATEGORICAL, RECORD_COLUMNS
from flightdelay.model.candidates import FlightFeatures
from flightdelay.serving.runtime import LinearScorer, NativeTrees, ServingModel, TreeScorer

log = logging.getLogger(__name__)

#: the largest probability difference from the Pipeline a compiled form may have
TOLERANCE = 1e-6
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


def _tree_nodes(clf: HistGradientBoostingClassifier, trees: list[Any]) -> dict[str, Any]:
    """The attributes of one TreeEnsemble node holding ``trees`` (each with at least one split).

    Internal nodes keep sklearn's order across trees and leaves are numbered separately. A
    categorical node tests membership in its left set, read from sklearn's bitset; inputs are the
    classifier's own codes 0..k-1 (``TreeScorer.tree_input`` makes any other value missing), so
    bins outside the set go right; a node whose left set is empty sends only missing values left,
    which ``x <= -inf`` with missing tracking left says without an (unsupported) empty set.
    """
    nodes = np.concatenate([t.nodes for t in trees])
    sizes = np.array([len(t.nodes) for t in trees])
    firsts = np.cumsum(sizes) - sizes
    leaf = nodes["is_leaf"].astype(bool)
    ids = np.where(leaf, np.cumsum(leaf) - 1, np.cumsum(~leaf) - 1)  # leaf id or internal id
    inner = np.flatnonzero(~leaf)
    first = np.repeat(firsts, sizes)[inner]
    left, right = nodes["left"][inner] + first, nodes["right"][inner] + first
    p = nodes[inner]
    bitsets = np.concatenate([t.raw_left_cat_bitsets.reshape(-1, 8) for t in trees])
    n_bitsets = np.array([len(t.raw_left_cat_bitsets) for t in trees])
    bitset_first = np.repeat(np.cumsum(n_bitsets) - n_bitsets, sizes)[inner]
    categorical = p["is_categorical"].astype(bool)
    left_sets = np.zeros((len(p), 256), dtype=bool)
    left_sets[categorical] = _unpack(bitsets[(p["bitset_idx"] + bitset_first)[categorical]])
    member = categorical & left_sets.any(axis=1)
    members = [v for s in left_sets[member] for v in (*np.flatnonzero(s).astype(float), np.nan)]
    attributes: dict[str, Any] = {
        "tree_roots": ids[firsts].tolist(),
        "nodes_featureids": p["feature_idx"].tolist(),
        "nodes_modes": np.where(member, _MEMBER, _LEQ).astype(np.uint8),
        "nodes_splits": np.where(
            member, 0.0, np.where(categorical, -np.inf, p["num_threshold"])
        ).astype(np.float64),
        "nodes_missing_value_tracks_true": p["missing_go_to_left"].astype(int).tolist(),
        "nodes_truenodeids": ids[left].tolist(),
        "nodes_trueleafs": leaf[left].astype(int).tolist(),
        "nodes_falsenodeids": ids[right].tolist(),
        "nodes_falseleafs": leaf[right].astype(int).tolist(),
        "leaf_targetids": [0] * int(leaf.sum()),
        "leaf_weights": nodes["value"][leaf].astype(np.float64),
    }
    if members:  # one set per membership node, in node order, each closed by a NaN
        attributes["membership_values"] = np.asarray(members, dtype=np.float64)
    return attributes


def trees_onnx(clf: HistGradientBoostingClassifier, n_inputs: int) -> tuple[bytes | None, float]:
    """The classifier's trees as a serialized ONNX model, ``X`` (n, n_inputs) float64 -> raw
    score (n, 1) float64, and the constant part of the score: the baseline plus the values of
    the trees that are a single leaf (which ONNX runtimes read differently; None: no other tree).
    """
    from onnx import TensorProto, checker, helper, numpy_helper  # noqa: PLC0415 - compile only

    trees = [iteration[0] for iteration in clf._predictors]
    constant = float(np.ravel(clf._baseline_prediction)[0])
    constant += sum(float(t.nodes[0]["value"]) for t in trees if t.nodes[0]["is_leaf"])
    trees = [t for t in trees if not t.nodes[0]["is_leaf"]]
    if not trees:
        return None, constant
    attributes = {
        name: numpy_helper.from_array(value) if isinstance(value, np.ndarray) else value
        for name, value in _tree_nodes(clf, trees).items()
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
    return model.SerializeToString(), constant


def _trees(clf: HistGradientBoostingClassifier, threads: int | None, native: bool) -> TreeScorer:
    order, encoders = _layout(clf)
    onnx, constant = trees_onnx(clf, len(order))
    scorer = TreeScorer(onnx, order, encoders, constant, threads)
    library = build_native(clf) if native else None
    if library is not None:
        try:
            scorer.native = NativeTrees(library, clf.n_features_in_, threads)
        except OSError as exc:
            log.warning("cannot load the native trees (%s): using the ONNX trees", exc)
    return scorer


def _linear(prep: ColumnTransformer, clf: LogisticRegression) -> LinearScorer:
    (_, num, num_cols), (_, cat, cat_cols) = prep.transformers_[:2]
    imputer, scaler = num[0], num[1]
    coef = np.ravel(clf.coef_)
    w_num, w_cat = coef[: len(num_cols)], coef[len(num_cols) :]
    weights = w_num / scaler.scale_  # the scaler centres and scales (_linear_unsupported)
    categories = [np.asarray(c, dtype=np.float64) for c in cat[1].categories_]
    bounds = np.cumsum([0, *(len(c) for c in categories)])
    return LinearScorer(
        num_cols=list(num_cols),
        fill=np.asarray(imputer.statistics_, dtype=np.float64),
        weights=weights,
        intercept=float(clf.intercept_[0]) - float(np.sum(scaler.mean_ * weights)),
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


def probe_records(features: FlightFeatures, n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Flight records that cross every kind of input: known, unknown and missing codes and
    tails, and numbers over a wide range with a fifth of the optional ones missing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "year": 2013,
            "month": rng.integers(1, 13, n),
            "day": rng.integers(1, 29, n),
            "sched_dep_time": rng.integers(0, 24, n) * 100 + rng.integers(0, 60, n),
            "sched_arr_time": rng.integers(0, 24, n) * 100 + rng.integers(0, 60, n),
            "distance": rng.uniform(10, 5000, n).round(),
        }
    )
    for col in CATEGORICAL:
        frame[col] = rng.choice([*features.categories_[col], "?"], n)
    frame["tailnum"] = rng.choice([*list(features.planes_)[:50], "?", None], n)
    for name in RECORD_COLUMNS:
        if name not in frame:  # optional numbers (weather)
            values = rng.uniform(-100, 1100, n)
            frame[name] = np.where(rng.random(n) < 0.2, np.nan, values)  # noqa: PLR2004
    return frame[list(RECORD_COLUMNS)]


def _differs(model: Pipeline, serving: ServingModel) -> float:
    """Largest probability difference between the Pipeline and its compiled form on probes
    (both tree forms, where the native one is there)."""
    probes = probe_records(model.steps[0][1])
    expected = model.predict_proba(probes)[:, 1]
    records = cast(
        "list[dict[str, Any]]", probes.astype(object).where(probes.notna(), None).to_dict("records")
    )
    diff = float(np.max(np.abs(serving.predict_records(records) - expected)))
    scorer = serving.scorer
    if isinstance(scorer, TreeScorer) and scorer.native is not None:
        native, scorer.native = scorer.native, None
        try:  # the ONNX trees, the fallback, must be right too
            diff = max(diff, float(np.max(np.abs(serving.predict_records(records) - expected))))
        finally:
            scorer.native = native
    return diff


def _compile(model: Pipeline, threads: int | None, native: bool) -> ServingModel | str:
    """The compiled form of a supported Pipeline, or why there is none."""
    steps = [step for _, step in model.steps]
    features, rest = steps[0], steps[1:]
    if not isinstance(features, FlightFeatures):
        return "the first step is not FlightFeatures"
    if len(rest) == 1 and isinstance(rest[0], HistGradientBoostingClassifier):
        reason = _trees_unsupported(rest[0])
        return reason or ServingModel(features.table(), _trees(rest[0], threads, native))
    if len(rest) == 2:  # noqa: PLR2004
        reason = _linear_unsupported(*rest)
        return reason or ServingModel(features.table(), _linear(*rest))
    return f"unsupported steps {[type(s).__name__ for s in rest]}"


def compile_pipeline(
    model: Pipeline, threads: int | None = None, *, native: bool = False
) -> ServingModel | None:
    """A ``ServingModel`` for a supported fitted Pipeline; None (logged) for any other.

    Supported: FlightFeatures -> HistGradientBoostingClassifier (binary), and FlightFeatures ->
    the logreg candidate's ColumnTransformer -> LogisticRegression (binary). The result is
    checked against the Pipeline on ``probe_records``; a difference over 1e-6 (a fitted state
    the compiler reads wrongly) means no compiled form.

    Args:
        model: the fitted Pipeline.
        threads: cores the trees may use on large inputs (default: every core).
        native: also compile the trees to native code (``compile.native``; ONNX stays the
            fallback where that cannot be built).
    """
    compiled = _compile(model, threads, native)
    if isinstance(compiled, str):
        reason = compiled
    else:
        diff = _differs(model, compiled)
        if diff <= TOLERANCE:
            return compiled
        reason = f"it differs from the Pipeline by {diff:.3g} on probe records"
    log.warning("no compiled path for this model (%s): using the sklearn Pipeline", reason)
    return None
