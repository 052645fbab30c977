"""MLflow tracking and promotion logic against a real SQLite tracking store in a temporary dir."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from conftest import PLANES, ROOT, make_records
from flightdelay.contract.schema import TARGET
from flightdelay.core.params import Params, load_params, params_hash
from flightdelay.model.store import load_model, save_model
from flightdelay.pipeline import train
from flightdelay.tracking import registry
from flightdelay.tracking import runs as tracking


@pytest.fixture(scope="module")
def params() -> Params:
    """The repository's params with few trees, so the tiny fits take a fraction of a second."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["candidates"]["hgb"].update(max_iter=10, min_samples_leaf=20)
    return Params.model_validate(raw)


@pytest.fixture(scope="module")
def result(params: Params) -> train.Result:
    return train.run(make_records(600, 1), make_records(300, 2), PLANES, params.train, 0)


def _store(tmp_path: Path) -> tracking.Settings:
    return tracking.settings({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}, tmp_path)


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, params: Params, result: train.Result
) -> tuple[tracking.Settings, str]:
    """One train logged to a fresh SQLite store: (where, parent run id)."""
    found = _store(tmp_path_factory.mktemp("mlflow"))
    example = make_records(5, 3).drop(columns=[TARGET])
    tags = {tracking.TAG_EXP_NAME: "e1", tracking.TAG_MODEL_MD5: "f00d"}
    return found, tracking.log_train(result, params, example, found, tags)


@pytest.mark.parametrize(("value", "on"), [("1", True), ("", True), ("0", False), ("Off", False)])
def test_off_switch(value: str, on: bool) -> None:
    assert tracking.enabled({tracking.TRACKING_SWITCH: value}) is on
    assert tracking.enabled({}) is True


def test_default_store_is_sqlite_at_the_dvc_root(tmp_path: Path) -> None:
    """Queued experiments run in temporary copies; DVC_ROOT names the real repository."""
    found = tracking.settings({"DVC_ROOT": str(tmp_path / "repo")}, tmp_path / "exps" / "tmp1")
    assert found.uri == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    assert found.artifact_location == (tmp_path / "repo" / "mlartifacts").as_uri()
    remote = tracking.settings({"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}, tmp_path)
    expected = ("http://127.0.0.1:5000", None, None)
    assert (remote.uri, remote.artifact_location, remote.sqlite_path) == expected


def test_tags_carry_the_one_params_hash_of_the_whole_file(params: Params) -> None:
    """The tag is ``core.params.params_hash``, the digest the Bento's metadata carries too: any
    param changes it, an equal params file keeps it."""
    tags = tracking.run_tags({}, params, ROOT)
    assert tags["dvc.params_hash"] == params_hash(params)
    assert re.fullmatch(r"[0-9a-f]{64}", tags["dvc.params_hash"])
    same = Params.model_validate(params.model_dump(mode="json"))
    other_train = params.model_copy(
        update={"train": params.train.model_copy(update={"refit": "train"})}
    )
    other_gates = params.model_copy(
        update={"evaluate": params.evaluate.model_copy(update={"threshold": 0.9})}
    )
    assert params_hash(same) == params_hash(params)
    assert len({params_hash(p) for p in (params, other_train, other_gates)}) == 3


def test_tags_name_the_dvc_experiment(params: Params) -> None:
    env = {"DVC_EXP_NAME": "brisk-owls", "DVC_EXP_BASELINE_REV": "abc123"}
    tags = tracking.run_tags(env, params, ROOT)
    assert tags[tracking.TAG_EXP_NAME] == "brisk-owls"
    assert tags["dvc.exp_baseline"] == "abc123"
    assert len(tags["git.sha"]) == 40
    assert tracking.TAG_EXP_NAME not in tracking.run_tags({}, params, ROOT)


def test_parent_and_nested_runs(
    logged: tuple[tracking.Settings, str], params: Params, result: train.Result
) -> None:
    found, run_id = logged
    client = MlflowClient(found.uri)
    parent = client.get_run(run_id)
    assert parent.data.tags["flightdelay.winner"] == result.winner
    assert parent.data.metrics["valid.hgb.roc_auc"] == result.metrics["valid.hgb.roc_auc"]
    assert parent.data.params["seed"] == str(params.base.seed)
    experiment_id = parent.info.experiment_id
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    by_name = {c.data.tags["flightdelay.candidate"]: c for c in children}
    assert set(by_name) == {"logreg", "hgb"}
    assert by_name["hgb"].data.params["max_iter"] == "10"
    assert by_name["logreg"].data.metrics["fit_seconds"] == result.fit_seconds["logreg"]
    assert found.sqlite_path is not None
    assert client.get_experiment(experiment_id).artifact_location.startswith(
        (found.sqlite_path.parent / "mlartifacts").as_uri()
    )
    expected = (run_id, parent.data.tags[tracking.TAG_MODEL_URI])
    assert registry.find_train_run(found, [], "e1") == expected
    assert registry.find_train_run(found, ["f00d"], "restored-from-run-cache") == expected
    assert registry.find_train_run(found, ["0bad"], "other") is None


def test_logged_model_predicts_like_the_dvc_model(
    tmp_path: Path, logged: tuple[tracking.Settings, str], result: train.Result
) -> None:
    """The MLflow copy and the joblib file DVC tracks give the same probabilities."""
    found, run_id = logged
    records = make_records(50, 4).drop(columns=[TARGET])
    uri = MlflowClient(found.uri).get_run(run_id).data.tags[tracking.TAG_MODEL_URI]
    save_model(result.model, tmp_path / "model.joblib")
    expected = load_model(tmp_path / "model.joblib").predict_proba(records)
    mlflow.set_tracking_uri(found.uri)
    np.testing.assert_array_equal(mlflow.sklearn.load_model(uri).predict_proba(records), expected)
    pyfunc = mlflow.pyfunc.load_model(uri)
    assert pyfunc.metadata.signature is not None
    np.testing.assert_allclose(np.asarray(pyfunc.predict(records)), expected)


def test_champion_alias_moves(logged: tuple[tracking.Settings, str]) -> None:
    found, run_id = logged
    uri = MlflowClient(found.uri).get_run(run_id).data.tags[tracking.TAG_MODEL_URI]
    assert registry.register_champion(found, uri, {}) == ("1", None)
    assert registry.register_champion(found, uri, {"k": "v"}) == ("2", "1")
    champion = MlflowClient(found.uri).get_model_version_by_alias("flight-delay", "champion")
    assert (str(champion.version), champion.tags["k"]) == ("2", "v")


def test_an_environment_alias_goes_to_the_newest_version_of_the_deployed_model(
    logged: tuple[tracking.Settings, str],
) -> None:
    """A passed deploy moves the alias named after its environment to the registered version whose
    train run logged the deployed model file (by its DVC md5); another md5 moves nothing."""
    found, run_id = logged
    uri = MlflowClient(found.uri).get_run(run_id).data.tags[tracking.TAG_MODEL_URI]
    newest, _ = registry.register_champion(found, uri, {})
    assert registry.move_alias(found, "staging", "f00d") == newest
    staged = MlflowClient(found.uri).get_model_version_by_alias("flight-delay", "staging")
    assert (str(staged.version), staged.run_id) == (newest, run_id)
    assert registry.move_alias(found, "production", "beef") is None
    with pytest.raises(mlflow.exceptions.MlflowException):
        MlflowClient(found.uri).get_model_version_by_alias("flight-delay", "production")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_store_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    found = tracking.settings({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}"}, tmp_path)
    with pytest.raises(tracking.TrackingError, match=r"tracking store http://127\.0\.0\.1:\d+: "):
        registry.check_reachable(found)
    (tmp_path / "file").write_text("not a directory")
    blocked = _store(tmp_path / "file")
    with pytest.raises(tracking.TrackingError, match="tracking store sqlite:///.*/file/mlflow.db"):
        registry.check_reachable(blocked)


def _train_main(tmp_path: Path, data: Path, name: str) -> tuple[bytes, bytes]:
    code = train.main(["--in", str(data), "--model", str(tmp_path / f"{name}.joblib"),
                       "--metrics", str(tmp_path / f"{name}.json"),
                       "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert code == 0
    return (tmp_path / f"{name}.joblib").read_bytes(), (tmp_path / f"{name}.json").read_bytes()


def _features(tmp_path: Path, params: Params) -> Path:
    """Tiny feature tables and the params file, as train.main reads them."""
    data = tmp_path / "features"
    data.mkdir(exist_ok=True)
    for name, seed in (("train", 1), ("valid", 2)):
        make_records(400, seed).to_parquet(data / f"{name}.parquet", index=False)
    PLANES.to_parquet(data / "planes.parquet", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return data


def test_train_with_an_unusable_store_fails_with_one_line_after_writing_its_outputs(
    tmp_path: Path,
    params: Params,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The tracking child fails while warming up (its store's folder is a file); train finishes
    its fits, writes its outputs, then fails with the child's one-line error."""
    data = _features(tmp_path, params)
    (tmp_path / "blocked").write_text("not a directory")
    monkeypatch.setenv(tracking.TRACKING_SWITCH, "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/blocked/mlflow.db")
    code = train.main(["--in", str(data), "--model", str(tmp_path / "m.joblib"),
                       "--metrics", str(tmp_path / "m.json"),
                       "--params", str(tmp_path / "params.yaml")])  # fmt: skip
    assert code != 0
    assert (tmp_path / "m.joblib").exists() and (tmp_path / "m.json").exists()
    err = capsys.readouterr().err
    assert f"tracking store sqlite:///{tmp_path}/blocked/mlflow.db" in err
    assert "Traceback" not in err


def test_tracking_leaves_train_outputs_byte_identical(
    tmp_path: Path,
    params: Params,
    logged: tuple[tracking.Settings, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """train.main with tracking off, then on (into the module's store): same bytes out."""
    data = _features(tmp_path, params)
    assert load_params(tmp_path / "params.yaml") == params
    monkeypatch.setenv(tracking.TRACKING_SWITCH, "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged[0].uri)
    runs = MlflowClient(logged[0].uri).search_runs
    experiment_id = MlflowClient(logged[0].uri).get_experiment_by_name("flight-delay")
    assert experiment_id is not None
    before = len(runs([experiment_id.experiment_id]))
    off = _train_main(tmp_path, data, "off")
    assert len(runs([experiment_id.experiment_id])) == before
    monkeypatch.setenv(tracking.TRACKING_SWITCH, "1")
    assert _train_main(tmp_path, data, "on") == off
    assert len(runs([experiment_id.experiment_id])) == before + 3  # parent + 2 candidates
