"""Signal or noise: paired-bootstrap intervals of a test metric's change between two models.

Both models are scored on the same test flights, so each resample draws flights (with
replacement) once and scores both models on that draw: the interval of ``metric(head) -
metric(base)`` then holds the flights' shared difficulty fixed and measures only how much the
difference itself depends on which flights happened to be in the test set.

A resample is a vector of integer weights (how often each flight was drawn), and every metric is
computed from weights on scores sorted once per model, so no resample sorts anything: ROC AUC and
average precision from running sums of weighted positives and negatives over the tie groups,
Brier and log loss as weighted means. Blocks of resamples are scored as one matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from flightdelay.core.params import ReportParams

Floats = NDArray[np.float64]
#: the test metrics that get an interval (evaluate.json's ``test.<name>``), with their direction
METRICS: dict[str, int] = {"roc_auc": 1, "pr_auc": 1, "brier": -1, "log_loss": -1}
NAMES = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "brier": "Brier", "log_loss": "log loss"}
BLOCK_CELLS = 1 << 20  # flights x resamples scored at once: 8 MB matrices stay in reused memory


@dataclass(frozen=True)
class Interval:
    """The change ``head - base`` of one metric on all test flights, and its bootstrap interval."""

    metric: str
    delta: float
    low: float
    high: float

    @property
    def within_noise(self) -> bool:
        """True when the interval includes zero: no change the test set can tell from chance."""
        return self.low <= 0.0 <= self.high

    @property
    def effect(self) -> int:
        """+1 an improvement beyond noise, -1 a regression beyond noise, 0 within noise."""
        if self.within_noise:
            return 0
        return METRICS[self.metric] * (1 if self.low > 0 else -1)

    def verdict(self) -> str:
        """'an improvement beyond noise', 'a regression beyond noise' or 'within noise'."""
        return {1: "an improvement beyond noise", -1: "a regression beyond noise"}.get(
            self.effect, "within noise"
        )

    def text(self) -> str:
        """The change and its interval, e.g. '+0.0123 [+0.0061, +0.0187]'."""
        return f"{self.delta:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


@dataclass(frozen=True)
class Ranked:
    """One model's predictions, sorted by descending score and cut into runs of tied scores."""

    order: NDArray[np.intp]
    ends: NDArray[np.intp] | None  # the last position of each run of tied scores; None: no ties
    positive: Floats  # labels in sorted order
    squared: Floats  # each flight's Brier term, in the original order
    logloss: Floats  # each flight's log-loss term, in the original order


def rank(y: NDArray[np.bool_], proba: Floats) -> Ranked:
    """One model's scores, sorted once for all resamples."""
    order = np.argsort(-proba, kind="stable")
    ranked = proba[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    eps = np.finfo(np.float64).eps  # scikit-learn's clipping of log loss
    clipped = np.clip(proba, eps, 1 - eps)
    truth = y.astype(np.float64)
    logloss = -(truth * np.log(clipped) + (1 - truth) * np.log1p(-clipped))
    groups = ends if len(ends) < len(proba) else None
    return Ranked(order, groups, truth[order], (proba - truth) ** 2, logloss)


def _rowdot(a: Floats, b: Floats) -> Floats:
    """The dot product of each row of ``a`` with the same row of ``b``."""
    out: Floats = np.einsum("ij,ij->i", a, b)
    return out


def weighted_scores(ranked: Ranked, weights: Floats) -> dict[str, Floats]:
    """The four metrics of one model for each row of ``weights`` (resamples x flights).

    With all weights 1 these are scikit-learn's ``roc_auc_score``, ``average_precision_score``,
    ``brier_score_loss`` and ``log_loss``; integer weights equal scoring the resampled flights.
    """
    sorted_w = weights[:, ranked.order]
    # running sums, read at the end of each tie group: the true positives and all the flights
    # scored at or above each distinct score
    tp = np.cumsum(sorted_w * ranked.positive, axis=1)
    seen = np.cumsum(sorted_w, axis=1)
    if ranked.ends is not None:
        tp, seen = tp[:, ranked.ends], seen[:, ranked.ends]
    fp = seen - tp
    pos, neg = np.diff(tp, axis=1, prepend=0.0), np.diff(fp, axis=1, prepend=0.0)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    # a positive outranks the negatives scored below it and ties with half of those at its score
    pairs = n_pos * n_neg - _rowdot(pos, fp - 0.5 * neg)
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample of one class: NaN
        roc_auc = pairs / (n_pos * n_neg)
        pr_auc = _rowdot(pos, precision) / n_pos
    total = weights.sum(axis=1)
    return {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "brier": weights @ ranked.squared / total,
        "log_loss": weights @ ranked.logloss / total,
    }


def _resample_blocks(n: int, resamples: int, seed: int) -> list[Floats]:
    """Bootstrap weights (how often each of ``n`` flights is drawn), in blocks of rows."""
    rng = np.random.default_rng(seed)
    block = max(1, BLOCK_CELLS // n)
    blocks = []
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        draws = rng.integers(0, n, size=(rows, n), dtype=np.int32) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        blocks.append(counts.astype(np.float64))
    return blocks


def paired_bootstrap(
    y: NDArray[np.bool_], base: Floats, head: Floats, params: ReportParams, seed: int
) -> dict[str, Interval]:
    """Percentile intervals of ``metric(head) - metric(base)`` over the same flights.

    Args:
        y: whether each test flight was delayed.
        base: the base model's probabilities for the same flights, in the same order.
        head: the head model's probabilities.
        params: how many resamples, and the intervals' coverage.
        seed: the resampling seed (params' ``base.seed``): the same seed, the same intervals.

    Returns:
        One interval per metric of ``METRICS``, by metric name.

    Raises:
        ValueError: when the arrays differ in length or hold one class only.
    """
    if not len(y) == len(base) == len(head):
        raise ValueError(f"{len(y)} labels, {len(base)} base and {len(head)} head predictions")
    if y.all() or not y.any():
        raise ValueError("the test flights hold one class only: ROC AUC is undefined")
    models = rank(y, base), rank(y, head)
    full = np.ones((1, len(y)))
    point = _delta(models, full)
    deltas: dict[str, list[Floats]] = {name: [] for name in METRICS}
    for weights in _resample_blocks(len(y), params.bootstrap_resamples, seed):
        for name, values in _delta(models, weights).items():
            deltas[name].append(values)
    tail = 100 * (1 - params.confidence) / 2
    out = {}
    for name in METRICS:
        low, high = np.nanpercentile(np.concatenate(deltas[name]), [tail, 100 - tail])
        out[name] = Interval(name, float(point[name][0]), float(low), float(high))
    return out


def _delta(models: tuple[Ranked, Ranked], weights: Floats) -> dict[str, Floats]:
    """``metric(head) - metric(base)`` for each row of ``weights``."""
    base, head = (weighted_scores(m, weights) for m in models)
    return {name: head[name] - base[name] for name in METRICS}
