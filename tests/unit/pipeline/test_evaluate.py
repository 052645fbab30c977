import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import TARGET
from flightdelay.core.params import EvaluateParams, Gates, HGBParams
from flightdelay.model.candidates import build
from flightdelay.pipeline.evaluate import PROBA, ROW, check_gates, run, scores, slice_scores


def test_scores_at_threshold() -> None:
    y = np.array([True, True, False, False])
    result = scores(y, np.array([0.9, 0.3, 0.6, 0.1]), threshold=0.5)
    assert result["roc_auc"] == 0.75
    assert result["precision"] == 0.5
    assert result["recall"] == 0.5
    assert result["brier"] == pytest.approx((0.01 + 0.49 + 0.36 + 0.01) / 4)


def test_gates_name_metric_value_and_bound() -> None:
    """Each gate fires on its own metric (a value on its bound passes), with one message naming
    the metric, its value and the bound."""
    metrics = {"test.roc_auc": 0.61, "test.brier": 0.3, "dummy.roc_auc": 0.5}
    failed = check_gates(metrics, Gates(min_roc_auc=0.7, max_brier=0.2, min_lift_over_dummy=0.05))
    assert failed == [
        "test.roc_auc = 0.6100, gate requires >= 0.7",
        "test.brier = 0.3000, gate requires <= 0.2",
    ]
    assert (
        check_gates(metrics, Gates(min_roc_auc=0.6, max_brier=0.3, min_lift_over_dummy=0.1)) == []
    )
    weak = {"test.roc_auc": 0.53, "test.brier": 0.2, "dummy.roc_auc": 0.5}
    assert check_gates(weak, Gates(min_roc_auc=0.5, max_brier=0.2, min_lift_over_dummy=0.05)) == [
        "roc_auc lift over dummy = 0.0300, gate requires >= 0.05"
    ]


def test_slices_skip_auc_for_single_class() -> None:
    test = pd.DataFrame(
        {"origin": ["EWR", "EWR", "JFK"], "carrier": "UA", TARGET: [True, False, True]}
    )
    out = slice_scores(test, np.array([0.8, 0.2, 0.5]))
    assert out["slice.origin.EWR.roc_auc"] == 1.0
    assert "slice.origin.JFK.roc_auc" not in out
    assert out["slice.origin.JFK.rows"] == 1
    assert out["slice.carrier.UA.delayed_rate"] == pytest.approx(2 / 3)


def test_run_beats_dummy_and_writes_every_plot() -> None:
    train, test = make_records(3000, seed=1), make_records(1000, seed=2)
    model = build("hgb", HGBParams(max_iter=30), 0, PLANES).fit(
        train.drop(columns=[TARGET]), train[TARGET]
    )
    result = run(model, test, float(train[TARGET].mean()), EvaluateParams(), seed=0)
    m = result.metrics
    assert m["dummy.roc_auc"] == 0.5
    assert m["test.roc_auc"] > 0.6
    assert m["test.brier"] < m["dummy.brier"]
    assert set(result.plots) == {"roc", "pr", "calibration", "confusion", "importance"}
    assert len(result.plots["confusion"]) == len(test)
    top = result.plots["importance"]["feature"].iloc[:2].tolist()
    assert sorted(top) == ["precip", "sched_dep_time"]  # what make_records' delays depend on
    assert result.failed_gates == []


def test_run_keeps_every_test_prediction_by_row() -> None:
    """The predictions table: one row per test flight in table order, its label, and the
    unrounded probability the test metrics were computed from."""
    train, test = make_records(2000, seed=3), make_records(500, seed=4)
    model = build("hgb", HGBParams(max_iter=20), 0, PLANES).fit(
        train.drop(columns=[TARGET]), train[TARGET]
    )
    result = run(model, test, float(train[TARGET].mean()), EvaluateParams(), seed=0)
    predictions = result.predictions
    assert list(predictions.columns) == [ROW, TARGET, PROBA]
    assert predictions[ROW].tolist() == list(range(len(test)))
    assert predictions[TARGET].tolist() == test[TARGET].tolist()
    again = scores(predictions[TARGET].to_numpy(), predictions[PROBA].to_numpy(), 0.5)
    assert round(again["roc_auc"], 6) == result.metrics["test.roc_auc"]
    assert round(again["log_loss"], 6) == result.metrics["test.log_loss"]
