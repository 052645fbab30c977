"""Stage 4, evaluate: test metrics beside a dummy baseline, slices, DVC plots and quality gates.

It also writes the test predictions (each flight's label and probability, by its row in the test
table), so that the pull-request report can score two revisions' models on the same flights.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from flightdelay.contract.schema import TARGET
from flightdelay.core.errors import StageError
from flightdelay.core.io import read_parquet, run_main, write_json, write_parquet
from flightdelay.core.params import EvaluateParams, Gates, load_params
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import load_model

log = logging.getLogger(__name__)

SLICES = ("origin", "carrier")
CURVE_POINTS = 200  # ROC/PR curves are thinned to this many points: plots, not archives
IMPORTANCE_ROWS = 5000
#: the columns of the predictions table: the flight's row in the test table, its label, the model's
#: probability; the row identifies a flight across revisions whose test tables are the same
ROW, PROBA = "row", "proba"


def scores(y: NDArray[np.bool_], proba: NDArray[np.float64], threshold: float) -> dict[str, float]:
    """Ranking, probability and decision metrics of one set of predictions."""
    label = proba >= threshold
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "pr_auc": float(average_precision_score(y, proba)),
        "log_loss": float(log_loss(y, proba, labels=[False, True])),
        "brier": float(brier_score_loss(y, proba)),
        "f1": float(f1_score(y, label, zero_division=0)),
        "precision": float(precision_score(y, label, zero_division=0)),
        "recall": float(recall_score(y, label, zero_division=0)),
    }


def slice_scores(test: pd.DataFrame, proba: NDArray[np.float64]) -> dict[str, float]:
    """ROC AUC (where both classes occur), size and delay rate per origin and per carrier."""
    out: dict[str, float] = {}
    y = test[TARGET].to_numpy()
    for column in SLICES:
        for value, idx in test.groupby(column).indices.items():
            key = f"slice.{column}.{value}"
            out[f"{key}.rows"] = len(idx)
            out[f"{key}.delayed_rate"] = float(y[idx].mean())
            if 0 < y[idx].sum() < len(idx):
                out[f"{key}.roc_auc"] = float(roc_auc_score(y[idx], proba[idx]))
    return out


def check_gates(metrics: dict[str, float], gates: Gates) -> list[str]:
    """Every gate the metrics fail, as 'metric value bound' messages."""
    lift = metrics["test.roc_auc"] - metrics["dummy.roc_auc"]
    checks = [
        ("test.roc_auc", metrics["test.roc_auc"], ">=", gates.min_roc_auc),
        ("test.brier", metrics["test.brier"], "<=", gates.max_brier),
        ("roc_auc lift over dummy", lift, ">=", gates.min_lift_over_dummy),
    ]
    return [
        f"{name} = {value:.4f}, gate requires {op} {bound}"
        for name, value, op, bound in checks
        if (value < bound if op == ">=" else value > bound)
    ]


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    step = max(1, len(frame) // CURVE_POINTS)
    return pd.concat([frame.iloc[::step], frame.iloc[[-1]]]).drop_duplicates().round(5)


def plots(
    model: Pipeline,
    test: pd.DataFrame,
    proba: NDArray[np.float64],
    params: EvaluateParams,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """The data behind the DVC plots (roc, pr, calibration, confusion, importance)."""
    y = test[TARGET].to_numpy()
    fpr, tpr, _ = roc_curve(y, proba)
    precision, recall, _ = precision_recall_curve(y, proba)
    frac_pos, mean_pred = calibration_curve(y, proba, n_bins=params.calibration_bins)
    sample = test.sample(n=min(IMPORTANCE_ROWS, len(test)), random_state=seed)
    imp = permutation_importance(
        model, sample.drop(columns=[TARGET]), sample[TARGET].to_numpy(),
        scoring="roc_auc", n_repeats=3, random_state=seed,
    )  # fmt: skip
    importance = pd.DataFrame(
        {"feature": sample.columns.drop(TARGET), "importance": imp.importances_mean}
    )
    return {
        "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
        "pr": _thin(pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]})),
        "calibration": pd.DataFrame(
            {"mean_predicted": mean_pred, "fraction_delayed": frac_pos}
        ).round(5),
        "confusion": pd.DataFrame(
            {"actual": y.astype(int), "predicted": (proba >= params.threshold).astype(int)}
        ),
        "importance": importance.sort_values("importance", ascending=False).round(6),
    }


def predictions(test: pd.DataFrame, proba: NDArray[np.float64]) -> pd.DataFrame:
    """Each test flight's row, label and predicted probability (unrounded, as scored)."""
    return pd.DataFrame(
        {ROW: np.arange(len(test)), TARGET: test[TARGET].to_numpy(dtype=bool), PROBA: proba}
    )


@dataclass
class Evaluation:
    metrics: dict[str, float]
    plots: dict[str, pd.DataFrame]
    failed_gates: list[str]
    predictions: pd.DataFrame


def run(
    model: Pipeline, test: pd.DataFrame, train_rate: float, params: EvaluateParams, seed: int
) -> Evaluation:
    """Score the model and a prior-only dummy (the training delay rate) on the test set."""
    y = test[TARGET].to_numpy()
    proba = predict_proba(model, test.drop(columns=[TARGET]))
    dummy = np.full(len(test), train_rate)
    metrics = {f"test.{k}": v for k, v in scores(y, proba, params.threshold).items()}
    metrics |= {f"dummy.{k}": v for k, v in scores(y, dummy, params.threshold).items()}
    metrics |= slice_scores(test, proba)
    metrics |= {
        "test.rows": len(test),
        "test.delayed_rate": float(y.mean()),
        "threshold": params.threshold,
    }
    metrics = {k: round(v, 6) for k, v in metrics.items()}
    return Evaluation(
        metrics,
        plots(model, test, proba, params, seed),
        check_gates(metrics, params.gates),
        predictions(test, proba),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True)
    parser.add_argument("--in", dest="inp", required=True, help="directory of feature tables")
    parser.add_argument("--metrics", required=True, help="output: metrics JSON")
    parser.add_argument("--plots", required=True, help="output: directory of plot CSVs")
    parser.add_argument("--predictions", required=True, help="output: test predictions (Parquet)")
    args = parser.parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        test = read_parquet(Path(args.inp) / "test.parquet")
        train_rate = float(read_parquet(Path(args.inp) / "train.parquet")[TARGET].mean())
        result = run(load_model(args.model), test, train_rate, params.evaluate, params.base.seed)
        m = result.metrics
        log.info("test roc_auc=%.4f (dummy %.4f) pr_auc=%.4f brier=%.4f f1=%.4f", m["test.roc_auc"],
                 m["dummy.roc_auc"], m["test.pr_auc"], m["test.brier"], m["test.f1"])  # fmt: skip
        if result.failed_gates:
            raise StageError("quality gate failed: " + "; ".join(result.failed_gates))
        write_json(result.metrics, args.metrics)
        write_parquet(result.predictions, args.predictions)
        for name, frame in result.plots.items():
            path = Path(args.plots) / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)

    return run_main("evaluate", body)


if __name__ == "__main__":
    raise SystemExit(main())
