"""Promotion's pure part: ``dvc exp show --json`` -> the best experiment, its gates.

The end-to-end promotion (real queued experiments, MLflow registry) is
tests/integration/test_experiments.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ROOT
from flightdelay.core.params import Params, load_params
from flightdelay.ops.promote import (
    DEFAULT_METRIC,
    Experiment,
    PromotionError,
    check_metric,
    experiments,
    gate_failures,
    metric_value,
    pick_best,
)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(ROOT / "params.yaml")


def _shown(*exps: tuple[str, dict[str, Any], str | None]) -> list[dict[str, Any]]:
    """``dvc exp show --json`` shape: baselines, each with groups of experiment revisions."""

    def state(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"rev": f"{name}-rev", "name": name, "error": None,
                "data": {"metrics": {"metrics/evaluate.json": {"data": metrics}},
                         "params": {"params.yaml": {"data": {"k": 1}}},
                         "outs": {"models/model.joblib": {"hash": f"{name}-md5"},
                                  "data/features": {"hash": "d.dir"}}}}  # fmt: skip

    groups = [
        {"revs": [state(n, m)], "executor": s and {"state": s}, "name": n} for n, m, s in exps
    ]
    workspace = {"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None}
    return [workspace, {"rev": "abc", "name": "main", "data": {}, "experiments": groups}]


def test_experiments_keeps_only_finished_ones() -> None:
    shown = _shown(("a", {"test.roc_auc": 0.7}, None), ("b", {}, "queued"),
                   ("c", {"test.roc_auc": 0.6}, "success"), ("d", {}, "failed"))  # fmt: skip
    found = experiments(shown)
    assert [e.name for e in found] == ["a", "c"]
    assert metric_value(found[0], "evaluate.test.roc_auc") == 0.7
    assert metric_value(found[0], "train.test.roc_auc") is None
    assert found[0].file_hashes == ("a-md5",)


def test_pick_best_higher_or_lower() -> None:
    found = experiments(_shown(("a", {"test.brier": 0.2, "test.roc_auc": 0.7}, None),
                               ("b", {"test.brier": 0.1, "test.roc_auc": 0.6}, None)))  # fmt: skip
    assert pick_best(found, "evaluate.test.roc_auc", lower_is_better=False).name == "a"
    assert pick_best(found, "evaluate.test.brier", lower_is_better=True).name == "b"


def test_pick_best_refuses() -> None:
    with pytest.raises(PromotionError, match="no finished experiments to promote"):
        pick_best([], "evaluate.test.roc_auc", lower_is_better=False)
    found = experiments(_shown(("a", {"test.roc_auc": 0.7}, None)))
    with pytest.raises(PromotionError, match=r"no experiment has the metric 'evaluate\.nope'"):
        pick_best(found, "evaluate.nope", lower_is_better=False)


def test_gate_failures_use_the_experiments_params(params: Params) -> None:
    metrics = {"test.roc_auc": 0.70, "test.brier": 0.18, "dummy.roc_auc": 0.5}
    raw = params.model_dump(mode="json")
    raw["evaluate"]["gates"] = {"min_roc_auc": 0.6, "max_brier": 0.2, "min_lift_over_dummy": 0.1}
    assert gate_failures(Experiment("ok", "r1", {"evaluate": metrics}, raw)) == []
    raw["evaluate"]["gates"]["min_roc_auc"] = 0.9
    failed = gate_failures(Experiment("strict", "r2", {"evaluate": metrics}, raw))
    assert failed == ["test.roc_auc = 0.7000, gate requires >= 0.9"]
    with pytest.raises(PromotionError, match="lacks 'test.brier': cannot check gates"):
        partial = {"test.roc_auc": 0.7, "dummy.roc_auc": 0.5}
        gate_failures(Experiment("x", "r3", {"evaluate": partial}, raw))
    with pytest.raises(PromotionError, match="experiment y: invalid params"):
        gate_failures(Experiment("y", "r4", {}, {"base": {}}))


def test_a_test_metric_needs_the_flag_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    check_metric(DEFAULT_METRIC, allow_test_metric=False)  # the validation score: no warning
    assert caplog.records == []
    with pytest.raises(
        PromotionError, match=r"evaluate\.test\.roc_auc is a test metric: .*optimistic"
    ):
        check_metric("evaluate.test.roc_auc", allow_test_metric=False)
    check_metric("evaluate.test.brier", allow_test_metric=True)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "promoting by the test metric evaluate.test.brier" in caplog.records[0].getMessage()
