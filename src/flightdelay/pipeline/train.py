"""Stage 3, train: fit every candidate named in params, pick the winner on validation, refit it."""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from flightdelay.contract.schema import TARGET
from flightdelay.core.dvc import file_md5
from flightdelay.core.io import read_parquet, run_main, write_json
from flightdelay.core.params import TrainParams, load_params
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import save_model
from flightdelay.tracking import runs
from flightdelay.tracking.child import Child, Job

log = logging.getLogger(__name__)


def score(metric: str, y: NDArray[np.bool_], proba: NDArray[np.float64]) -> float:
    """The validation metric, oriented so that higher is better."""
    if metric == "roc_auc":
        return float(roc_auc_score(y, proba))
    if metric == "average_precision":
        return float(average_precision_score(y, proba))
    return -float(log_loss(y, proba, labels=[False, True]))


@dataclass(frozen=True)
class Result(runs.TrainRun):
    """What tracking logs (winner, model, metrics, fit times) plus every fitted candidate."""

    candidates: dict[str, Pipeline] = field(default_factory=dict)


def fit(model: Pipeline, frame: pd.DataFrame) -> Pipeline:
    return model.fit(frame.drop(columns=[TARGET]), frame[TARGET].to_numpy())


def run(
    train: pd.DataFrame, valid: pd.DataFrame, planes: pd.DataFrame, params: TrainParams, seed: int
) -> Result:
    """Fit each candidate on train, score it on valid, refit the best as ``params.refit`` says."""
    metrics: dict[str, float | str] = {}
    fitted: dict[str, Pipeline] = {}
    seconds: dict[str, float] = {}
    y_valid = valid[TARGET].to_numpy()
    for name in params.candidates.names():
        started = time.perf_counter()
        candidate = build(name, getattr(params.candidates, name), seed, planes, params.history)
        model = fit(candidate, train)
        seconds[name] = time.perf_counter() - started
        proba = predict_proba(model, valid.drop(columns=[TARGET]))
        metrics[f"valid.{name}.{params.metric}"] = round(score(params.metric, y_valid, proba), 6)
        fitted[name] = model
        log.info("%-7s valid %s=%.4f (fit %.1fs)", name, params.metric,
                 metrics[f"valid.{name}.{params.metric}"], seconds[name])  # fmt: skip
    winner = max(fitted, key=lambda n: (metrics[f"valid.{n}.{params.metric}"], n))
    # the score that chose the winner, under one key whatever its name: what promotion compares
    metrics[f"valid.winner.{params.metric}"] = metrics[f"valid.{winner}.{params.metric}"]
    model = fitted[winner]
    if params.refit == "train_valid":
        started = time.perf_counter()
        data = pd.concat([train, valid], ignore_index=True)
        model = fit(
            build(winner, getattr(params.candidates, winner), seed, planes, params.history), data
        )
        seconds["refit"] = time.perf_counter() - started
    metrics.update({"winner": winner, "train_rows": len(train), "valid_rows": len(valid)})
    return Result(winner, model, metrics, seconds, fitted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--in", dest="inp", required=True, help="directory of feature tables")
    parser.add_argument("--model", required=True, help="output: the fitted winner (joblib)")
    parser.add_argument("--metrics", required=True, help="output: metrics JSON")
    args = parser.parse_args(argv)

    def body(child: Child | None) -> None:
        params = load_params(args.params)
        train, valid, planes = (
            read_parquet(Path(args.inp) / f"{n}.parquet") for n in ("train", "valid", "planes")
        )
        result = run(train, valid, planes, params.train, params.base.seed)
        save_model(result.model, args.model)
        write_json(result.metrics, args.metrics)
        log.info("winner %s -> %s", result.winner, args.model)
        if child is None:
            log.info("tracking off (%s)", runs.TRACKING_SWITCH)
            return
        tags = runs.run_tags(os.environ, params, Path.cwd())  # after the outputs are written:
        tags[runs.TAG_MODEL_MD5] = file_md5(args.model)  # they never depend on it
        child.finish(
            Job(args.params, args.inp, args.model, result.winner, result.metrics,
                result.fit_seconds, tags)
        )  # fmt: skip

    def tracked() -> None:
        if not runs.enabled(os.environ):
            body(None)
            return
        child = Child.start(runs.settings(os.environ, Path.cwd()))
        try:
            body(child)
        finally:
            child.stop()

    return run_main("train", tracked)


if __name__ == "__main__":
    raise SystemExit(main())
