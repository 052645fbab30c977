"""The `dvc exp` workflow end to end: a queue of experiments run by two workers, each tracked in
MLflow, then `flightdelay promote` applying the best and moving the registry's champion alias."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from conftest import CHILD_ENV, copy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: the grid queued below: three experiments that change the winner's hyperparameters
GRID = (
    ["train.candidates.logreg.C=0.05"],
    ["train.candidates.hgb.learning_rate=0.2", "train.candidates.hgb.max_iter=60"],
    ["train.candidates.hgb.learning_rate=0.1", "train.candidates.hgb.max_leaf_nodes=15"],
)
WATCHED = ("params.yaml", "dvc.lock", "metrics/train.json", "metrics/evaluate.json",
           "models/model.joblib")  # fmt: skip
QUEUE_TIMEOUT_S = 900


def child_env(**env: str) -> dict[str, str]:
    """The default tracking store (sqlite:///<repo>/mlflow.db) unless ``env`` says otherwise."""
    child = {k: v for k, v in CHILD_ENV.items() if k not in {"MLFLOW_TRACKING_URI", "DVC_ROOT"}}
    return child | {"FLIGHTDELAY_TRACKING": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"} | env


def sh(cmd: list[str], repo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=repo, env=child_env(**env), capture_output=True, text=True, check=False
    )


def start_queue(repo: Path, jobs: int) -> None:
    """`dvc queue start` leaves a helper process running that keeps the command's stdout and
    stderr open, so reading them through a pipe would never end: they go to a file instead."""
    log = repo.parent / "queue-start.log"
    with log.open("w") as out:
        cmd = ["dvc", "queue", "start", "-j", str(jobs)]
        result = subprocess.run(
            cmd, cwd=repo, env=child_env(), stdout=out, stderr=subprocess.STDOUT, check=False
        )
    assert result.returncode == 0, log.read_text()


def stop_workers(repo: Path) -> None:
    """End the queue's workers and helpers started in ``repo`` (they outlive their command)."""
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["cwd"] == str(repo) and (
            "queue-worker" in cmdline or "queue start" in cmdline
        ):
            proc.kill()


def ok(cmd: list[str], repo: Path) -> str:
    result = sh(cmd, repo)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def snapshot(repo: Path) -> dict[str, str]:
    return {name: hashlib.sha256((repo / name).read_bytes()).hexdigest() for name in WATCHED}


def refuse(repo: Path, args: list[str], message: str, **env: str) -> None:
    """`flightdelay promote` exits 1, one line naming the problem; the workspace is unchanged."""
    before = snapshot(repo)
    result = sh(["flightdelay", "promote", *args], repo, **env)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("promote: error: ") and message in last, result.stderr
    assert snapshot(repo) == before


def wait_for_queue(repo: Path) -> None:
    deadline = time.monotonic() + QUEUE_TIMEOUT_S
    while "Queued" in (status := ok(["dvc", "queue", "status"], repo)) or "Running" in status:
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == len(GRID), status


def finished(repo: Path, file: str = "metrics/evaluate.json") -> dict[str, dict[str, Any]]:
    """name -> the metrics ``file`` of every experiment, from `dvc exp show --json`."""
    shown = json.loads(ok(["dvc", "exp", "show", "--json"], repo))
    return {
        rev["name"]: rev["data"]["metrics"][file]["data"]
        for baseline in shown
        for group in baseline.get("experiments") or []
        for rev in group["revs"]
    }


def champion(repo: Path) -> tuple[str, dict[str, str]]:
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    version = client.get_model_version_by_alias("flight-delay", "champion")
    return str(version.version), version.tags


def test_queue_two_workers_then_promote_the_best(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    ok(["dvc", "repro"], repo)
    ok(["git", "add", "-A"], repo)
    ok(["git", "commit", "-qm", "baseline run"], repo)
    refuse(repo, [], "no finished experiments to promote")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    refuse(repo, [], f"tracking store {closed}", MLFLOW_TRACKING_URI=closed)

    for overrides in GRID:
        ok(["dvc", "exp", "run", "--queue", *(f"-S{o}" for o in overrides)], repo)
    start_queue(repo, jobs=2)
    try:
        wait_for_queue(repo)
    finally:
        stop_workers(repo)
    metrics = finished(repo)
    assert len(metrics) == len(GRID)
    refuse(repo, ["--metric", "evaluate.no_such_metric"], "no experiment has the metric")
    refuse(repo, ["--metric", "evaluate.test.roc_auc"], "is a test metric")

    # by default the winner's validation score chooses (ties: by name); the test set is not read
    valid = finished(repo, "metrics/train.json")
    best = min(valid, key=lambda name: (-valid[name]["valid.winner.roc_auc"], name))
    result = sh(["flightdelay", "promote"], repo)
    assert result.returncode == 0, result.stderr
    assert "best by train.valid.winner.roc_auc" in result.stderr
    assert f"flight-delay v1 is now 'champion' (experiment {best}; previous champion: none)" in (
        result.stderr
    )
    assert json.loads((repo / "metrics/evaluate.json").read_text()) == metrics[best]
    version, tags = champion(repo)
    assert (version, tags["dvc.exp_name"]) == ("1", best)

    # an experiment that is "best" but fails its own quality gates is refused
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["gates"]["min_roc_auc"] = 0.99
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    evaluate = metrics[best] | {"test.roc_auc": 0.98, "test.brier": 0.24}
    (repo / "metrics/evaluate.json").write_text(json.dumps(evaluate, indent=2, sort_keys=True))
    ok(["dvc", "exp", "save", "-n", "strict"], repo)
    strict = ["--metric", "evaluate.test.roc_auc", "--allow-test-metric"]
    refuse(repo, strict, "experiment strict fails the quality gates: test.roc_auc")
    assert champion(repo)[0] == "1"

    # lower is better: the least Brier score among the tracked experiments moves the alias
    lowest = min(metrics, key=lambda name: (metrics[name]["test.brier"], name))
    cmd = ["flightdelay", "promote", "--metric", "evaluate.test.brier", "--lower-is-better",
           "--allow-test-metric"]  # fmt: skip
    result = sh(cmd, repo)
    assert result.returncode == 0, result.stderr
    assert "promoting by the test metric evaluate.test.brier" in result.stderr
    assert "previous champion: v1" in result.stderr
    version, tags = champion(repo)
    assert (version, tags["dvc.exp_name"]) == ("2", lowest)
    assert json.loads((repo / "metrics/evaluate.json").read_text()) == metrics[lowest]
