"""flightdelay.ops.remote without a server: messages, endpoint resolution, run-cache listing, and
the errors raised before any network access (no repository, no remote, unknown remote)."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from dvc.repo import Repo

from flightdelay.ops.remote import (
    RemoteError,
    check_remote,
    endpoint_of,
    explain,
    main,
    run_cache_entries,
)


def test_endpoint_prefers_the_remote_config_then_the_s3_variable_then_the_global_one() -> None:
    configured = {"client_kwargs": {"endpoint_url": "http://minio:9000"}}
    env = {"AWS_ENDPOINT_URL": "http://global:1", "AWS_ENDPOINT_URL_S3": "http://s3:2"}
    assert endpoint_of(configured, env) == "http://minio:9000"
    assert endpoint_of({}, env) == "http://s3:2"
    assert endpoint_of({}, {"AWS_ENDPOINT_URL": "http://global:1"}) == "http://global:1"
    assert endpoint_of({"client_kwargs": {}}, {}) == "the AWS default endpoint"


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (NoCredentialsError(), "no AWS credentials found"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "cannot connect"),
        (PermissionError("Forbidden"), "access denied (Forbidden)"),
        (FileNotFoundError("The specified bucket does not exist"), "the bucket does not exist"),
        (ValueError("odd"), "ValueError: odd"),
    ],
)
def test_explain_names_the_problem(exc: Exception, says: str) -> None:
    assert says in explain(exc, "storage")


def test_explain_gives_the_command_that_fixes_the_endpoint() -> None:
    message = explain(EndpointConnectionError(endpoint_url="http://x"), "minio")
    assert "dvc remote modify --local minio endpointurl URL" in message


def test_run_cache_entries_lists_key_value_pairs(tmp_path: Path) -> None:
    assert run_cache_entries(tmp_path / "missing") == []
    for key, value in [("abc1", "v2"), ("abc1", "v1"), ("de9f", "v3")]:
        entry = tmp_path / key[:2] / key / value
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text("cmd: x\n")
    assert run_cache_entries(tmp_path) == [("abc1", "v1"), ("abc1", "v2"), ("de9f", "v3")]


def test_check_outside_a_dvc_repository_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="not inside of a DVC repository"):
        check_remote(tmp_path, None)


def test_check_without_a_remote_says_how_to_add_one(tmp_path: Path) -> None:
    Repo.init(str(tmp_path), no_scm=True).close()
    with pytest.raises(RemoteError, match="dvc remote add -d"):
        check_remote(tmp_path, None)


def test_main_names_an_unknown_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Repo.init(str(tmp_path), no_scm=True).close()
    assert main(["check", "-r", "nope", "--repo", str(tmp_path)]) == 1
    assert "remote 'nope' doesn't exist" in capsys.readouterr().err


def test_main_requires_an_action() -> None:
    with pytest.raises(SystemExit, match="2"):
        main([])
