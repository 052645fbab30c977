"""The MLflow model registry: finding a train run's model and moving the aliases."""

from __future__ import annotations

from flightdelay.contract.names import CHAMPION, REGISTERED_MODEL
from flightdelay.tracking.runs import TAG_EXP_NAME, TAG_MODEL_MD5, TAG_MODEL_URI, Settings, session


def check_reachable(found: Settings) -> None:
    """Raise ``TrackingError`` unless the store answers a read."""
    from mlflow import MlflowClient  # noqa: PLC0415

    with session(found):
        MlflowClient(found.uri).search_experiments(max_results=1)


def find_train_run(found: Settings, model_md5s: list[str], exp_name: str) -> tuple[str, str] | None:
    """(run id, model URI) of the latest train run that logged the experiment's model.

    Matched first by the md5 of the model file (DVC's hash of the output: also right when DVC
    restored train from its run-cache instead of running it), then by the experiment name.
    """
    from mlflow import MlflowClient  # noqa: PLC0415

    filters = [f"tags.`{TAG_MODEL_MD5}` = '{md5}'" for md5 in model_md5s]
    filters.append(f"tags.`{TAG_EXP_NAME}` = '{exp_name}'")
    with session(found):
        client = MlflowClient(found.uri)
        experiment = client.get_experiment_by_name(found.experiment)
        ids = [experiment.experiment_id] if experiment is not None else []
        for query in filters if ids else []:
            order = ["attributes.start_time DESC"]
            runs = [r for r in client.search_runs(ids, query, order_by=order)
                    if TAG_MODEL_URI in r.data.tags]  # fmt: skip
            if runs:
                return str(runs[0].info.run_id), str(runs[0].data.tags[TAG_MODEL_URI])
    return None


def register_champion(
    found: Settings, model_uri: str, tags: dict[str, str]
) -> tuple[str, str | None]:
    """Register ``model_uri`` under ``flight-delay`` and move the ``champion`` alias to it.

    Returns:
        The new version and the version that held the alias before (None for the first).
    """
    import mlflow  # noqa: PLC0415
    from mlflow import MlflowClient  # noqa: PLC0415
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    with session(found):
        client = MlflowClient(found.uri)
        try:
            previous: str | None = client.get_model_version_by_alias(
                REGISTERED_MODEL, CHAMPION
            ).version
        except MlflowException:
            previous = None  # no registered model or no champion yet
        version = mlflow.register_model(model_uri, REGISTERED_MODEL, tags=tags).version
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, str(version))
    return str(version), (str(previous) if previous is not None else None)


def move_alias(found: Settings, alias: str, model_md5: str) -> str | None:
    """Give ``alias`` to the newest registered version of ``flight-delay`` whose train run logged
    the model file of md5 ``model_md5``; returns that version, or None when there is none."""
    from mlflow import MlflowClient  # noqa: PLC0415

    with session(found):
        client = MlflowClient(found.uri)
        versions = client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            run = client.get_run(version.run_id) if version.run_id else None
            if run is not None and run.data.tags.get(TAG_MODEL_MD5) == model_md5:
                client.set_registered_model_alias(REGISTERED_MODEL, alias, str(version.version))
                return str(version.version)
    return None
