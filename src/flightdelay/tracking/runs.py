"""MLflow at the edges: where runs go, and the train stage's lab notebook.

Called from ``pipeline.train.main`` (through ``tracking.child``) and ``ops.promote`` only; the
pure stage cores never see MLflow. DVC's ``models/`` output stays the reproducible source of
truth: tracking writes nothing there, so the model file and ``metrics/train.json`` are
byte-identical with tracking on or off.
"""

from __future__ import annotations

import fcntl
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flightdelay.contract.names import EXPERIMENT
from flightdelay.core.errors import StageError
from flightdelay.core.git import head_sha
from flightdelay.core.params import Params, params_hash

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)

TRACKING_SWITCH = "FLIGHTDELAY_TRACKING"  # "0", "false", "no" or "off" turns tracking off
DEFAULT_STORE = "mlflow.db"  # SQLite file at the repository root
TAG_EXP_NAME = "dvc.exp_name"
TAG_MODEL_URI = "flightdelay.model_uri"
TAG_MODEL_MD5 = "dvc.model_md5"


class TrackingError(StageError):
    """The tracking store cannot be reached or refused a write."""


@dataclass(frozen=True)
class TrainRun:
    """What one train run produced, as it is logged."""

    winner: str
    model: Pipeline
    metrics: dict[str, float | str]
    fit_seconds: dict[str, float]


@dataclass(frozen=True)
class Settings:
    """Where runs go: the tracking URI, the MLflow experiment and (for SQLite) its artifact root."""

    uri: str
    experiment: str = EXPERIMENT
    artifact_location: str | None = None

    @property
    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        return Path(self.uri.removeprefix(prefix)) if self.uri.startswith(prefix) else None


def enabled(env: Mapping[str, str]) -> bool:
    """Tracking is on unless ``FLIGHTDELAY_TRACKING`` says 0/false/no/off."""
    return env.get(TRACKING_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def settings(env: Mapping[str, str], cwd: Path) -> Settings:
    """``MLFLOW_TRACKING_URI``, else ``sqlite:///<repo root>/mlflow.db``.

    Under ``dvc exp run --queue/--temp`` stages run in a temporary copy; DVC points ``DVC_ROOT`` at
    the real repository, so every experiment lands in the same store. A SQLite store keeps its
    artifacts in ``mlartifacts/`` beside the database file, not in the (temporary) working dir.
    """
    root = Path(env.get("DVC_ROOT") or cwd).resolve()
    uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DEFAULT_STORE}"
    experiment = env.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = Settings(uri, experiment)
    db = found.sqlite_path
    if db is not None:
        artifacts = (db.resolve().parent / "mlartifacts").as_uri()
        found = Settings(uri, experiment, artifacts)
    return found


def run_tags(env: Mapping[str, str], params: Params, cwd: Path) -> dict[str, str]:
    """Git SHA, params hash and, under ``dvc exp run``, the experiment name and baseline."""
    tags = {"git.sha": head_sha(cwd), "dvc.params_hash": params_hash(params)}
    if env.get("DVC_EXP_NAME"):
        tags[TAG_EXP_NAME] = env["DVC_EXP_NAME"]
    if env.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline"] = env["DVC_EXP_BASELINE_REV"]
    return tags


@contextmanager
def session(found: Settings) -> Iterator[None]:
    """Point MLflow at the store; serialise writers of a SQLite file; turn failures into one line.

    Two ``dvc queue`` workers may finish at once, and SQLite allows one writer: an exclusive
    ``flock`` on the database file (SQLite itself uses POSIX record locks, which ``flock`` does not
    touch) makes the second wait instead of failing with "database is locked".
    """
    import mlflow  # noqa: PLC0415 - heavy import, only when tracking is on
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    db = found.sqlite_path
    lock = None
    try:
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
            lock = db.open("a")  # creates an empty file: SQLite takes it as a new database
            fcntl.flock(lock, fcntl.LOCK_EX)
        mlflow.set_tracking_uri(found.uri)
        yield
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"tracking store {found.uri}: {first}") from exc
    finally:
        if lock is not None:
            lock.close()


def _experiment_id(found: Settings) -> str:
    import mlflow  # noqa: PLC0415

    experiment = mlflow.get_experiment_by_name(found.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(mlflow.create_experiment(found.experiment, found.artifact_location))


def _requirements() -> list[str]:
    """Pinned from the running environment: MLflow then skips its slow requirement inference."""
    from importlib.metadata import version  # noqa: PLC0415

    dists = ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle", "pyarrow")
    return [f"{name}=={version(name)}" for name in dists]


def warm_up(found: Settings) -> None:
    """Do ahead what every ``log_train`` pays once per process: import MLflow, open the store
    (creating its tables and the experiment), and save a throwaway model (MLflow's first save
    indexes every installed distribution to check the model's requirements)."""
    import tempfile  # noqa: PLC0415

    import mlflow.sklearn  # noqa: PLC0415
    from sklearn.dummy import DummyClassifier  # noqa: PLC0415

    with session(found):
        _experiment_id(found)
    with tempfile.TemporaryDirectory(prefix="flightdelay-warm-up-") as tmp:
        dummy = DummyClassifier().fit([[0], [1]], [0, 1])
        mlflow.sklearn.save_model(
            dummy, f"{tmp}/model", serialization_format="cloudpickle",
            pip_requirements=_requirements(),
        )  # fmt: skip


def _log_candidates(result: TrainRun, params: Params, metric: str, experiment_id: str) -> None:
    import mlflow  # noqa: PLC0415

    for name in params.train.candidates.names():  # the ones train.run fitted
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=True):
            mlflow.set_tag("flightdelay.candidate", name)
            mlflow.log_params(getattr(params.train.candidates, name).model_dump(mode="json"))
            mlflow.log_metrics(
                {
                    f"valid.{metric}": float(result.metrics[f"valid.{name}.{metric}"]),
                    "fit_seconds": result.fit_seconds[name],
                }
            )


def _log_winner(result: TrainRun, example: pd.DataFrame) -> str:
    """The refitted winner as an MLflow model whose pyfunc returns class probabilities."""
    import mlflow  # noqa: PLC0415
    import mlflow.sklearn  # noqa: PLC0415
    from mlflow.models import infer_signature  # noqa: PLC0415

    import flightdelay  # noqa: PLC0415

    with warnings.catch_warnings():  # the schema hint on integer columns: they are required
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        signature = infer_signature(example, result.model.predict_proba(example))
    info = mlflow.sklearn.log_model(
        result.model,
        name="model",
        serialization_format="cloudpickle",  # the default, skops, refuses the tree models
        signature=signature,
        input_example=example,
        pyfunc_predict_fn="predict_proba",
        pip_requirements=_requirements(),
        code_paths=[str(Path(flightdelay.__file__).parent)],  # FlightFeatures unpickles from it
    )
    return str(info.model_uri)


def log_train(
    result: TrainRun, params: Params, example: pd.DataFrame, found: Settings, tags: dict[str, str]
) -> str:
    """A parent run per train (params, metrics, tags, the winner model), a nested run per candidate.

    Args:
        result: what ``train.run`` returned.
        params: the parsed params file.
        example: a few flight records (no target): the model's input example and signature.
        found: where to log (see ``settings``).
        tags: from ``run_tags``.

    Returns:
        The parent run's id.

    Raises:
        TrackingError: the store cannot be reached or refuses the write.
    """
    import mlflow  # noqa: PLC0415

    metric = params.train.metric
    with session(found):
        experiment_id = _experiment_id(found)
        with mlflow.start_run(experiment_id=experiment_id, run_name="train", tags=tags) as parent:
            mlflow.log_params(
                {"seed": params.base.seed, "metric": metric, "refit": params.train.refit,
                 "candidates": ",".join(params.train.candidates.names())}
            )  # fmt: skip
            numeric = {k: float(v) for k, v in result.metrics.items() if not isinstance(v, str)}
            seconds = {f"fit_seconds.{k}": v for k, v in result.fit_seconds.items()}
            mlflow.log_metrics(numeric | seconds)
            _log_candidates(result, params, metric, experiment_id)
            mlflow.set_tag("flightdelay.winner", result.winner)
            mlflow.set_tag(TAG_MODEL_URI, _log_winner(result, example))
            run_id: str = parent.info.run_id
    log.info("tracked run %s in %s (experiment %r)", run_id, found.uri, found.experiment)
    return run_id
