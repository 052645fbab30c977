"""Paired-bootstrap intervals: the weighted metrics are scikit-learn's, a chance change reads as
noise, a real one as signal, and the seed fixes the interval."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from flightdelay.core.params import ReportParams
from flightdelay.ops.significance import Interval, paired_bootstrap, rank, weighted_scores

SKLEARN = {
    "roc_auc": roc_auc_score,
    "pr_auc": average_precision_score,
    "brier": brier_score_loss,
    "log_loss": log_loss,
}
PARAMS = ReportParams(bootstrap_resamples=1000, confidence=0.95)
Floats = NDArray[np.float64]


def _two_models(
    n: int, seed: int, head_noise: float = 0.8
) -> tuple[NDArray[np.bool_], Floats, Floats]:
    """Labels from a latent risk, and two models that see it through noise; the base's noise has
    scale 0.8, half of it shared with the head (two variants of one model make related errors)."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-(risk - 1.2)))
    shared = rng.normal(size=n)

    def model(scale: float) -> Floats:
        noise = (shared + rng.normal(size=n)) / np.sqrt(2)
        return 1 / (1 + np.exp(-(0.6 * risk + scale * noise - 1.2)))

    return y, model(0.8), model(head_noise)


def test_weighted_metrics_are_scikit_learns_on_the_resampled_flights() -> None:
    """Unit weights give scikit-learn's metrics; the counts of a resample give its metrics on the
    resampled flights, ties of scores included (rounded probabilities tie often)."""
    y, proba, _ = _two_models(3000, seed=1)
    proba = proba.round(2)
    draw = np.random.default_rng(2).integers(0, len(y), len(y))
    weights = np.vstack([np.ones(len(y)), np.bincount(draw, minlength=len(y))])
    got = weighted_scores(rank(y, proba), weights)
    for name, metric in SKLEARN.items():
        assert got[name][0] == pytest.approx(metric(y, proba), abs=1e-12), name
        assert got[name][1] == pytest.approx(metric(y[draw], proba[draw]), abs=1e-12), name


def test_a_chance_change_of_roc_auc_on_1616_flights_is_noise() -> None:
    """Two models of the same skill on a test set the size of a 3% sample's (1,616 flights):
    ROC AUC moves by +0.0045, which the interval shows to be within noise."""
    y, base, head = _two_models(1616, seed=96)
    intervals = paired_bootstrap(y, base, head, PARAMS, seed=2013)
    roc = intervals["roc_auc"]
    assert roc.delta == pytest.approx(0.0045, abs=1e-4)
    assert roc.delta == pytest.approx(roc_auc_score(y, head) - roc_auc_score(y, base), abs=1e-12)
    assert roc.low < 0 < roc.high
    assert roc.within_noise
    assert roc.verdict() == "within noise"


def test_a_model_with_signal_against_one_with_noise_added_is_an_improvement() -> None:
    y, base, head = _two_models(1616, seed=96, head_noise=0.2)
    intervals = paired_bootstrap(y, base, head, PARAMS, seed=2013)
    for name in ("roc_auc", "pr_auc"):
        assert intervals[name].low > 0, name
        assert intervals[name].verdict() == "an improvement beyond noise"
    for name in ("brier", "log_loss"):  # lower is better: a fall beyond noise is an improvement
        assert intervals[name].high < 0, name
        assert intervals[name].effect == 1
    worse = paired_bootstrap(y, head, base, PARAMS, seed=2013)  # the same models swapped
    assert {m: i.verdict() for m, i in worse.items()} == dict.fromkeys(
        intervals, "a regression beyond noise"
    )


def test_the_same_seed_gives_the_same_interval() -> None:
    y, base, head = _two_models(1616, seed=96)
    first = paired_bootstrap(y, base, head, PARAMS, seed=7)
    assert paired_bootstrap(y, base, head, PARAMS, seed=7) == first
    other = paired_bootstrap(y, base, head, PARAMS, seed=8)["roc_auc"]
    assert (other.low, other.high) != (first["roc_auc"].low, first["roc_auc"].high)
    assert other.delta == first["roc_auc"].delta  # the change itself needs no resampling


def test_wider_confidence_gives_a_wider_interval() -> None:
    y, base, head = _two_models(1616, seed=96)
    narrow = paired_bootstrap(y, base, head, ReportParams(confidence=0.8), seed=1)["brier"]
    wide = paired_bootstrap(y, base, head, ReportParams(confidence=0.99), seed=1)["brier"]
    assert wide.low < narrow.low < narrow.high < wide.high


def test_identical_models_give_a_zero_interval() -> None:
    y, base, _ = _two_models(500, seed=3)
    for found in paired_bootstrap(y, base, base, PARAMS, seed=1).values():
        assert (found.delta, found.low, found.high) == (0.0, 0.0, 0.0)
        assert found.verdict() == "within noise"


def test_interval_text() -> None:
    found = Interval("brier", -0.0011, -0.00243, 0.00021)
    assert found.text() == "-0.0011 [-0.0024, +0.0002]"
    assert found.effect == 0


@pytest.mark.parametrize(
    ("y", "base", "head", "message"),
    [
        ([True, False], [0.5, 0.5], [0.5], "2 labels, 2 base and 1 head predictions"),
        ([True, True], [0.5, 0.4], [0.3, 0.2], "one class only"),
    ],
)
def test_bad_inputs_are_named(
    y: list[bool], base: list[float], head: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(np.array(y), np.array(base), np.array(head), PARAMS, seed=0)
