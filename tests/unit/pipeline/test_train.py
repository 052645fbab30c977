import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import TARGET
from flightdelay.core.params import Candidates, HGBParams, LogRegParams, TrainParams
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba
from flightdelay.pipeline.train import run, score


def _params(**kwargs: object) -> TrainParams:
    candidates = Candidates(logreg=LogRegParams(), hgb=HGBParams(max_iter=20, min_samples_leaf=20))
    return TrainParams(candidates=candidates, **kwargs)  # type: ignore[arg-type]


def test_every_candidate_is_scored_and_the_best_wins() -> None:
    train, valid = make_records(2000, seed=1), make_records(800, seed=2)
    result = run(train, valid, PLANES, _params(refit="train"), seed=0)
    scores = {n: result.metrics[f"valid.{n}.roc_auc"] for n in ("logreg", "hgb")}
    assert result.winner == max(scores, key=lambda n: scores[n])
    assert result.model is result.candidates[result.winner]
    assert result.metrics["train_rows"] == 2000
    assert set(result.fit_seconds) == {"logreg", "hgb"}


def test_refit_on_train_and_valid_changes_the_model() -> None:
    """The model returned is the winner fitted anew on train + valid: it answers differently
    from the train-only fit and exactly as a fit of the same candidate on both by hand."""
    train, valid = make_records(2000, seed=1), make_records(800, seed=2)
    params = _params(refit="train_valid")
    result = run(train, valid, PLANES, params, seed=0)
    assert "refit" in result.fit_seconds
    assert result.model is not result.candidates[result.winner]
    x_valid = valid.drop(columns=[TARGET])
    refitted = predict_proba(result.model, x_valid)
    train_only = predict_proba(result.candidates[result.winner], x_valid)
    assert np.abs(refitted - train_only).max() > 1e-3
    both = pd.concat([train, valid], ignore_index=True)
    chosen = getattr(params.candidates, result.winner)
    by_hand = build(result.winner, chosen, 0, PLANES, params.history).fit(
        both.drop(columns=[TARGET]), both[TARGET].to_numpy()
    )
    np.testing.assert_array_equal(refitted, predict_proba(by_hand, x_valid))


def test_metrics_are_deterministic() -> None:
    train, valid = make_records(1000, seed=1), make_records(400, seed=2)
    first = run(train, valid, PLANES, _params(), seed=3).metrics
    assert first == run(train, valid, PLANES, _params(), seed=3).metrics


@pytest.mark.parametrize(
    ("metric", "perfect", "worse"),
    [("roc_auc", 1.0, 0.5), ("average_precision", 1.0, 0.5), ("neg_log_loss", 0.0, -0.7)],
)
def test_score_is_higher_when_better(metric: str, perfect: float, worse: float) -> None:
    y = np.array([False, True, False, True])
    assert score(metric, y, np.array([1e-9, 1 - 1e-9, 1e-9, 1 - 1e-9])) == pytest.approx(
        perfect, abs=1e-6
    )
    assert score(metric, y, np.full(4, 0.5)) == pytest.approx(worse, abs=0.01)


def test_train_frame_keeps_target_out_of_features() -> None:
    train = make_records(500, seed=1)
    model = run(train, make_records(200, seed=2), PLANES, _params(refit="train"), seed=0).model
    assert model.named_steps["features"].n_features_in_ == len(train.columns) - 1
    assert TARGET in train
