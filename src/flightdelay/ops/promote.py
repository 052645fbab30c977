"""Promote the best DVC experiment: apply it to the workspace and make its model the champion.

``flightdelay promote`` reads ``dvc exp show --json`` (the experiments of the current commit),
picks the experiment with the highest value of the metric, by default the winner's validation
score ``train.valid.winner.roc_auc`` (``--metric`` names another, ``--lower-is-better`` for
losses), checks the quality gates of ``params.yaml`` as that experiment
ran them, runs ``dvc exp apply`` and registers the model its train run logged to MLflow as
``flight-delay`` with the alias ``champion``. Every refusal (no experiments, no experiment with
the metric, tracking store unreachable, gates failed, no tracked model) happens before anything
in the workspace changes.

A metric is named ``<metrics file stem>.<key>``: ``evaluate.test.roc_auc`` is the key
``test.roc_auc`` of ``metrics/evaluate.json``.

Choosing among many experiments by a test metric makes the test months part of the selection:
the best of many test scores is optimistic, and the test set no longer measures the champion.
So a test metric (one of ``metrics/evaluate.json``'s ``test.*`` keys) needs
``--allow-test-metric``, and promotion warns when it is used; the gates still read the test
metrics, since they refuse a model rather than pick one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flightdelay.contract.names import CHAMPION, REGISTERED_MODEL
from flightdelay.core.dvc import dvc
from flightdelay.core.errors import StageError
from flightdelay.core.io import run_main
from flightdelay.core.params import Params
from flightdelay.pipeline.evaluate import check_gates
from flightdelay.tracking import registry, runs

log = logging.getLogger(__name__)

PARAMS_FILE = "params.yaml"
#: the winner's validation score (train stage): chooses the champion without touching the test set
DEFAULT_METRIC = "train.valid.winner.roc_auc"
TEST_METRICS = "evaluate.test."
DONE = {None, "success"}  # executor states of finished experiments (None: not run by a queue)


class PromotionError(StageError):
    """No experiment can be promoted; the message says why."""


@dataclass(frozen=True)
class Experiment:
    """One finished experiment as ``dvc exp show`` reports it."""

    name: str
    rev: str
    metrics: dict[str, dict[str, Any]]  # metrics file stem ("evaluate") -> its flat JSON
    params: dict[str, Any]  # params.yaml as the experiment ran it
    file_hashes: tuple[str, ...] = ()  # DVC's md5 of each file output (the model among them)


def _experiment(entry: dict[str, Any]) -> Experiment:
    data = entry.get("data") or {}
    metrics = {
        Path(path).stem: dict(content.get("data") or {})
        for path, content in (data.get("metrics") or {}).items()
    }
    params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data") or {}
    outs = (data.get("outs") or {}).values()
    hashes = tuple(o["hash"] for o in outs if o.get("hash") and not o["hash"].endswith(".dir"))
    name = entry.get("name") or entry["rev"][:7]
    return Experiment(name, entry["rev"], metrics, params, hashes)


def experiments(shown: list[dict[str, Any]]) -> list[Experiment]:
    """The finished, error-free experiments in ``dvc exp show --json`` (baselines left out)."""
    found = []
    for baseline in shown:
        for group in baseline.get("experiments") or []:
            state = (group.get("executor") or {}).get("state")
            if state not in DONE:
                continue
            found += [_experiment(rev) for rev in group.get("revs") or [] if not rev.get("error")]
    return found


def metric_value(experiment: Experiment, metric: str) -> float | None:
    """The value of ``<file stem>.<key>`` in the experiment, or None when it has no such number."""
    stem, _, key = metric.partition(".")
    value = experiment.metrics.get(stem, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def pick_best(found: list[Experiment], metric: str, lower_is_better: bool) -> Experiment:
    """The experiment with the best value of ``metric``; ties go to the first name in order.

    Raises:
        PromotionError: the list is empty or no experiment has the metric.
    """
    if not found:
        raise PromotionError(
            "no finished experiments to promote: run `dvc exp run` (or queue some) first"
        )
    scored = [(v, e) for e in found if (v := metric_value(e, metric)) is not None]
    if not scored:
        names = ", ".join(e.name for e in found)
        raise PromotionError(f"no experiment has the metric {metric!r} (experiments: {names})")
    sign = 1.0 if lower_is_better else -1.0
    return min(scored, key=lambda ve: (sign * ve[0], ve[1].name))[1]


def gate_failures(experiment: Experiment) -> list[str]:
    """The quality gates (``evaluate.gates`` of the experiment's params) its test metrics fail."""
    try:
        gates = Params.model_validate(experiment.params).evaluate.gates
    except ValidationError as exc:
        raise PromotionError(f"experiment {experiment.name}: invalid params: {exc}") from exc
    evaluation = experiment.metrics.get("evaluate", {})
    try:
        return check_gates(evaluation, gates)
    except KeyError as exc:
        raise PromotionError(
            f"experiment {experiment.name}: metrics/evaluate.json lacks {exc}: cannot check gates"
        ) from exc


def check_metric(metric: str, allow_test_metric: bool) -> None:
    """Refuse a test metric unless allowed; warn, saying why, when it is.

    Raises:
        PromotionError: ``metric`` is a test metric and ``allow_test_metric`` is False.
    """
    if not metric.startswith(TEST_METRICS):
        return
    why = (
        "the best of many experiments' test scores is optimistic, and the test months stop "
        "measuring the champion"
    )
    if not allow_test_metric:
        raise PromotionError(
            f"{metric} is a test metric: {why}; choose by {DEFAULT_METRIC} (the default) or "
            "pass --allow-test-metric"
        )
    log.warning("promoting by the test metric %s: %s", metric, why)


def promote(
    repo: Path, metric: str, lower_is_better: bool, found: runs.Settings
) -> tuple[Experiment, str, str | None]:
    """Check everything, then apply the best experiment and move the champion alias to its model.

    Returns:
        The promoted experiment, its registered model version and the previous champion's.

    Raises:
        PromotionError: (before any change) when nothing can be promoted.
        TrackingError: the tracking store is unreachable.
    """
    registry.check_reachable(found)
    log.info("reading experiments (dvc exp show)")
    shown = json.loads(dvc(["exp", "show", "--json"], repo, PromotionError))
    best = pick_best(experiments(shown), metric, lower_is_better)
    value = metric_value(best, metric)
    log.info("best by %s (%s is better): %s = %s", metric,
             "lower" if lower_is_better else "higher", best.name, value)  # fmt: skip
    failed = gate_failures(best)
    if failed:
        raise PromotionError(f"experiment {best.name} fails the quality gates: {'; '.join(failed)}")
    tracked = registry.find_train_run(found, list(best.file_hashes), best.name)
    if tracked is None:
        raise PromotionError(
            f"experiment {best.name} has no train run with a model in {found.uri} "
            f"(was it run with {runs.TRACKING_SWITCH}=0?)"
        )
    run_id, model_uri = tracked
    log.info("applying %s (%s) to the workspace", best.name, best.rev[:7])
    dvc(["exp", "apply", best.rev], repo, PromotionError)
    tags = {runs.TAG_EXP_NAME: best.name, "dvc.exp_rev": best.rev, "mlflow.run": run_id,
            "promoted_by": f"{metric}={value}"}  # fmt: skip
    version, previous = registry.register_champion(found, model_uri, tags)
    return best, version, previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flightdelay promote",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--metric",
        default=DEFAULT_METRIC,
        help=f"<metrics file stem>.<key> (default: {DEFAULT_METRIC}, the winner's validation "
        "score; higher is better unless --lower-is-better)",
    )
    parser.add_argument(
        "--allow-test-metric",
        action="store_true",
        help="allow choosing by a test metric (evaluate.test.*), with a warning",
    )
    parser.add_argument("--lower-is-better", action="store_true", help="for losses (brier, …)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the DVC repository")
    args = parser.parse_args(argv)

    def body() -> None:
        # an unreachable tracking server fails in seconds instead of after minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        check_metric(args.metric, args.allow_test_metric)
        found = runs.settings(os.environ, args.repo)
        best, version, previous = promote(args.repo, args.metric, args.lower_is_better, found)
        log.info("%s v%s is now %r (experiment %s; previous champion: %s)",
                 REGISTERED_MODEL, version, CHAMPION, best.name,
                 f"v{previous}" if previous else "none")  # fmt: skip

    return run_main("promote", body)


if __name__ == "__main__":
    raise SystemExit(main())
