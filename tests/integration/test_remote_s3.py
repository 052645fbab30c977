"""The DVC remote on S3 (dvc-s3) against a real S3 API: moto's server on loopback.

One sampled pipeline run is pushed (outputs, run-cache and the run-cache's metrics, as
``make push`` does); fresh ``git clone``s of it pull or reproduce from the remote.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from subprocess import PIPE
from typing import NamedTuple

import pytest
from s3 import (
    BUCKET,
    Link,
    add_remote,
    auth_enforced,
    client,
    keys,
    moto_server,
    run_s3,
    s3_env,
    set_endpoint,
    workspace,
)

from conftest import ROOT

pytestmark = pytest.mark.integration

STAGES = ("ingest", "features", "train", "evaluate", "benchmark")
OUTPUT_DIRS = ("data", "models", "plots", "metrics")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(scope="module")
def origin(small_repo: Path, endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's sampled run, copied and pushed as ``make push`` does. Branch ``no-lock`` is
    the commit before the run (no dvc.lock: only the run-cache can spare a re-run); ``main`` has
    the run committed."""
    repo = tmp_path_factory.mktemp("origin") / "repo"
    # everything but DVC's state dir, which is tied to the original's path
    shutil.copytree(small_repo, repo, ignore=lambda d, _: ["tmp"] if d.endswith(".dvc") else [])
    set_endpoint(repo, endpoint)
    run_s3(["git", "branch", "no-lock"], repo)
    assert "up to date" in run_s3(["dvc", "status"], repo).stdout
    pushed = run_s3(["flightdelay", "remote", "push"], repo)  # what `make push` runs
    # the three metrics files (cache: false) are what `dvc push --run-cache` leaves out
    assert "3 run-cache output object(s) uploaded" in pushed.stderr, pushed.stderr
    run_s3(["git", "add", "-A"], repo)
    run_s3(["git", "commit", "-qm", "pipeline run"], repo)
    return repo


def clone(origin: Path, dest: Path, endpoint: str, branch: str = "main") -> Path:
    """A fresh clone (Git only: no data, no DVC cache) whose remote points at the server."""
    run_s3(["git", "clone", "-q", "-b", branch, str(origin), str(dest)], origin)
    set_endpoint(dest, endpoint)
    return dest


def outputs(repo: Path) -> dict[str, bytes]:
    """Every pipeline output file (DVC-tracked data, model, plots; Git-tracked metrics)."""
    return {
        path.relative_to(repo).as_posix(): path.read_bytes()
        for top in OUTPUT_DIRS
        for path in sorted((repo / top).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def test_push_then_pull_into_a_fresh_clone_is_byte_identical(
    origin: Path, endpoint: str, tmp_path: Path
) -> None:
    repo = clone(origin, tmp_path / "clone", endpoint)
    assert not (repo / "models" / "model.joblib").exists()
    assert keys(endpoint, BUCKET, "cache/files/md5/"), "nothing was pushed"

    run_s3(["dvc", "pull"], repo)

    expected = outputs(origin)
    assert {"data/features/train.parquet", "models/model.joblib"} <= expected.keys()
    assert outputs(repo) == expected
    assert "up to date" in run_s3(["dvc", "status"], repo).stdout


def test_repro_pull_restores_every_stage_from_the_run_cache(
    origin: Path, endpoint: str, tmp_path: Path
) -> None:
    repo = clone(origin, tmp_path / "clone", endpoint, branch="no-lock")
    assert not (repo / "dvc.lock").exists()
    assert keys(endpoint, BUCKET, "cache/runs/"), "no run-cache was pushed"

    done = run_s3(["dvc", "repro", "--pull"], repo)

    said = done.stdout + done.stderr
    for stage in STAGES:
        assert f"Stage '{stage}' is cached - skipping run" in said, said
    assert "Running stage" not in said
    assert "__main__ INFO" not in said  # no stage logged a line: none ran
    assert outputs(repo) == outputs(origin)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Case(NamedTuple):
    bucket: str
    endpoint: str | None  # None: the moto server
    credentials: dict[str, str] | None  # None: the valid test credentials
    enforce_auth: bool
    problem: str  # what `flightdelay remote check` must say


CASES = {
    "wrong-endpoint": Case(
        BUCKET, f"http://127.0.0.1:{closed_port()}", None, False, "cannot connect to the endpoint"
    ),
    "missing-bucket": Case("no-such-bucket", None, None, False, "the bucket does not exist"),
    "bad-credentials": Case(
        BUCKET,
        None,
        {"AWS_ACCESS_KEY_ID": "AKIAWRONG", "AWS_SECRET_ACCESS_KEY": "wrong"},
        True,
        "access denied",
    ),
    "no-credentials": Case(BUCKET, None, {}, False, "no AWS credentials found"),
}


@pytest.fixture(scope="module")
def empty_clone(origin: Path, endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone that failed pulls must leave as it is."""
    return clone(origin, tmp_path_factory.mktemp("empty") / "clone", endpoint)


@pytest.mark.parametrize("name", CASES)
def test_a_broken_remote_fails_clearly_and_leaves_no_partial_files(
    name: str, origin: Path, empty_clone: Path, endpoint: str
) -> None:
    case = CASES[name]
    url, where = f"s3://{case.bucket}/cache", case.endpoint or endpoint
    for repo in (origin, empty_clone):
        add_remote(repo, name, url, where)
    before = workspace(origin), workspace(empty_clone)
    env = s3_env(case.credentials)

    with auth_enforced(endpoint) if case.enforce_auth else nullcontext():
        push = run_s3(["dvc", "push", "-r", name], origin, env, check=False)
        pull = run_s3(["dvc", "pull", "-r", name], empty_clone, env, check=False)
        check = run_s3(["flightdelay", "remote", "check", "-r", name], origin, env, check=False)

    assert push.returncode != 0, push.stdout
    assert pull.returncode != 0, pull.stdout
    assert check.returncode == 1
    assert f"remote: error: remote '{name}' ({url} at {where}): {case.problem}" in check.stderr
    assert (workspace(origin), workspace(empty_clone)) == before
    assert not (empty_clone / "models" / "model.joblib").exists()
    assert not (empty_clone / "data" / "features").exists()


def _cache_bytes(repo: Path) -> int:
    return sum(
        p.stat().st_size for p in (repo / ".dvc" / "cache" / "files").rglob("*") if p.is_file()
    )


def _when_relayed(link: Link, count: int, proc: subprocess.Popen[str]) -> None:
    """Wait until ``count`` bytes went through the link (the transfer is under way)."""
    deadline = time.monotonic() + 120
    while link.relayed < count:
        assert proc.poll() is None, f"finished before {count} bytes: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{link.relayed} of {count} bytes in 120 s"
        time.sleep(0.05)


def test_push_cut_off_midway_fails_clearly_and_a_second_push_completes(
    origin: Path, endpoint: str, tmp_path: Path
) -> None:
    """The store goes away a quarter into `make push` (`flightdelay remote push`): exit status 1
    and one line naming the remote, the unreachable endpoint and what to do; once the store is
    back the same push completes, and a fresh clone pulls every output from it."""
    client(endpoint).create_bucket(Bucket="cut-push")
    total = _cache_bytes(origin)
    link = Link(endpoint, bytes_per_s=max(total // 8, 50_000)).start()
    add_remote(origin, "cut-push", "s3://cut-push/cache", link.url)
    push = ["flightdelay", "remote", "push", "-r", "cut-push"]  # what `make push` runs
    proc = subprocess.Popen(push, cwd=origin, env=s3_env(), stdout=PIPE, stderr=PIPE, text=True)
    _when_relayed(link, total // 4, proc)
    link.cut()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    said = [line for line in err.splitlines() if line.startswith("remote: error:")]
    assert said == [
        f"remote: error: push stopped midway: remote 'cut-push' (s3://cut-push/cache at "
        f"{link.url}): cannot connect to the endpoint ({_unreachable(err)}): check the network "
        "and the endpoint (`dvc remote modify --local cut-push endpointurl URL` or "
        "AWS_ENDPOINT_URL); run `make push` again once it answers (what was transferred is kept)"
    ], err

    link.start()
    try:
        run_s3(push, origin)
        repo = clone(origin, tmp_path / "clone", endpoint)
        add_remote(repo, "cut-push", "s3://cut-push/cache", link.url)
        run_s3(["dvc", "pull", "-r", "cut-push"], repo)
    finally:
        link.cut()
    assert outputs(repo) == outputs(origin)


def _unreachable(stderr: str) -> str:
    """botocore's own words for the refused connection, as the check quotes them."""
    found = re.search(r"cannot connect to the endpoint \((.*?)\): check", stderr)
    assert found, stderr
    return found.group(1)


def test_pull_interrupted_leaves_no_half_written_file_and_a_second_pull_completes(
    origin: Path, endpoint: str, tmp_path: Path
) -> None:
    """Ctrl-C a third into `dvc pull`: every output in the workspace is whole or absent, every
    object in the cache hashes to its name (scripts/verify_cache.py), `dvc status` does not call
    the workspace up to date, `dvc checkout` restores only whole files; the next pull completes."""
    repo = clone(origin, tmp_path / "clone", endpoint)
    total = _cache_bytes(origin)
    link = Link(endpoint, bytes_per_s=max(total // 8, 50_000)).start()
    add_remote(repo, "slow", f"s3://{BUCKET}/cache", link.url)
    pull = ["dvc", "pull", "-r", "slow"]
    try:
        proc = subprocess.Popen(pull, cwd=repo, env=s3_env(), stdout=PIPE, stderr=PIPE, text=True)
        _when_relayed(link, total // 3, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0, out + err

        expected = outputs(origin)
        partial = outputs(repo)
        assert partial.keys() < expected.keys(), "the pull was not interrupted"
        assert {k: v for k, v in expected.items() if k in partial} == partial
        verify = [sys.executable, str(ROOT / "scripts" / "verify_cache.py"), "--repo", str(repo)]
        assert run_s3(verify, repo, check=False).returncode == 0
        assert "up to date" not in run_s3(["dvc", "status"], repo).stdout
        run_s3(["dvc", "checkout"], repo, check=False)
        restored = outputs(repo)
        assert {k: v for k, v in expected.items() if k in restored} == restored

        run_s3(pull, repo)
    finally:
        link.cut()
    assert outputs(repo) == expected
    assert "up to date" in run_s3(["dvc", "status"], repo).stdout
