"""The DVC remote: an access check with a clear message, and the run-cache outputs to push.

``check`` lists the remote's prefix once and turns what S3 (or the network) answers into one
line naming the remote, its URL and endpoint, the problem and the fix. DVC's own messages
("unexpected error - Forbidden") name none of these.

``push-run-outputs`` closes a gap of ``dvc push --run-cache``: it uploads the run-cache entries
but not the objects of ``cache: false`` outputs (the metrics JSON files), which the run-cache
keeps in the local cache. Without them ``dvc repro --pull`` in a fresh clone re-runs every stage
that writes metrics. This uploads the objects that the local run-cache entries name.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dvc.exceptions import DvcException
from dvc.repo import Repo

from flightdelay.core.dvc import dvc
from flightdelay.core.errors import StageError
from flightdelay.core.io import setup_logging

log = logging.getLogger(__name__)


class RemoteError(StageError):
    """The remote cannot be used: the message names it, the problem and the fix."""


#: environment variables that set the S3 endpoint when the remote config does not
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "FSSPEC_S3_ENDPOINT_URL")


def endpoint_of(fs_args: dict[str, Any], environ: dict[str, str]) -> str:
    """The endpoint the remote talks to: its ``endpointurl``, an environment variable, or AWS.

    Args:
        fs_args: the remote filesystem's arguments (``client_kwargs.endpoint_url`` if set).
        environ: the process environment.

    Returns:
        The endpoint URL, or ``"the AWS default endpoint"``.
    """
    configured = fs_args.get("client_kwargs", {}).get("endpoint_url")
    if configured:
        return str(configured)
    found = next((environ[var] for var in ENDPOINT_VARS if environ.get(var)), None)
    return found or "the AWS default endpoint"


def explain(exc: BaseException, name: str) -> str:
    """What went wrong talking to remote ``name``, and how to fix it, in one line.

    Botocore's exceptions are matched by class name so that this module needs no botocore types.
    """
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    if "NoCredentialsError" in kinds:
        return (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
            "AWS_PROFILE (without credentials `dvc repro` still works: it recomputes)"
        )
    if "EndpointConnectionError" in kinds or "ConnectionError" in kinds:
        return (
            f"cannot connect to the endpoint ({exc}): check the network and the endpoint "
            f"(`dvc remote modify --local {name} endpointurl URL` or AWS_ENDPOINT_URL)"
        )
    if isinstance(exc, PermissionError):
        return (
            f"access denied ({exc}): check the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE) and their permissions on the bucket"
        )
    if isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower():
        return (
            f"the bucket does not exist ({exc}): create it, or point the remote at another "
            f"one (`dvc remote modify {name} url s3://BUCKET/PREFIX`)"
        )
    return f"{type(exc).__name__}: {exc}"


def probe(fs: Any, path: str) -> None:
    """List the remote's prefix once; raise whatever the store answers.

    An empty prefix (a new remote) lists as missing, just like a missing bucket: for S3 the
    bucket is listed as well to tell the two apart.
    """
    try:
        fs.ls(path)
    except FileNotFoundError:
        bucket = path.split("/", 1)[0]
        if fs.protocol == "s3" and bucket != path:
            fs.ls(bucket)


def open_repo(root: Path) -> Any:
    """The DVC repository at ``root`` (use it as a context manager).

    Raises:
        RemoteError: ``root`` is not inside a DVC repository.
    """
    try:
        return Repo(str(root))
    except DvcException as exc:
        raise RemoteError(f"{root}: {exc}") from exc


def check_remote(root: Path, name: str | None) -> str:
    """Check that the DVC remote ``name`` (default: ``core.remote``) of repo ``root`` answers.

    Returns:
        The remote described as ``remote 'NAME' (URL at ENDPOINT)``.

    Raises:
        RemoteError: no such remote, or the store refused or could not be reached.
    """
    with open_repo(root) as repo:
        try:
            remote = repo.cloud.get_remote(name)
        except DvcException as exc:
            raise RemoteError(f"{root}: {exc}") from exc
        url = remote.fs.unstrip_protocol(remote.path)
        where = (
            f"remote '{remote.name}' ({url} at {endpoint_of(remote.fs.fs_args, {**os.environ})})"
        )
        log.info("checking %s", where)
        try:
            probe(remote.fs, remote.path)
        # botocore's errors are not OSErrors: every failure here is reported the same way
        except Exception as exc:
            raise RemoteError(f"{where}: {explain(exc, remote.name)}") from exc
    return where


def run_cache_entries(runs_dir: Path) -> list[tuple[str, str]]:
    """The ``(stage key, run value)`` pairs stored under a cache's ``runs/`` directory."""
    if not runs_dir.is_dir():
        return []
    return sorted(
        (key_dir.name, entry.name)
        for key_dir in runs_dir.glob("*/*")
        if key_dir.is_dir()
        for entry in key_dir.iterdir()
        if entry.is_file()
    )


def push_run_outputs(root: Path, name: str | None) -> int:
    """Upload every object the local run-cache entries name, ``cache: false`` outputs included.

    Objects already on the remote are skipped.

    Returns:
        How many objects were uploaded.

    Raises:
        RemoteError: some objects could not be uploaded.
    """
    with open_repo(root) as repo:
        entries = run_cache_entries(Path(repo.stage_cache.cache_dir))
        log.info("%d run-cache entries in %s", len(entries), repo.stage_cache.cache_dir)
        used = repo.stage_cache.get_used_objs(entries, remote=name)
        transferred = 0
        for odb, objs in used.items():
            result = repo.cloud.push(objs, remote=name, odb=odb)
            if result.failed:
                raise RemoteError(f"{len(result.failed)} run-cache output(s) failed to upload")
            transferred += len(result.transferred)
    return transferred


def transfer(root: Path, name: str | None, action: str) -> None:
    """``dvc push --run-cache`` (then ``push_run_outputs``) or ``dvc pull --run-cache``, after a
    check of the remote; a failure midway is explained in one line: the remote checked again,
    and what to do. Objects transferred before the failure are whole and stay (DVC writes each
    through a temporary file): the next run transfers the rest.

    Raises:
        RemoteError: the remote cannot be used, or the transfer stopped (and why).
    """
    where = check_remote(root, name)
    try:
        dvc([action, "--run-cache", *(["-r", name] if name else [])], root, RemoteError, shown=True)
    except RemoteError as exc:
        try:
            check_remote(root, name)
        except RemoteError as down:
            raise RemoteError(
                f"{action} stopped midway: {down}; run `make {action}` again once it answers "
                "(what was transferred is kept)"
            ) from exc
        raise RemoteError(f"{action} with {where} failed: {exc}") from exc
    if action == "push":
        log.info("%d run-cache output object(s) uploaded", push_run_outputs(root, name))


def main(argv: Sequence[str] | None = None) -> int:
    """``flightdelay remote check|push-run-outputs [-r NAME]``; exit status 1 on a remote error."""
    parser = argparse.ArgumentParser(prog="flightdelay remote", description=__doc__.split("\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    for action, text in {
        "check": "check that the remote answers; a clear error naming it if not",
        "push-run-outputs": "upload the run-cache outputs `dvc push --run-cache` leaves out",
        "push": "check, then dvc push --run-cache and push-run-outputs (what `make push` runs)",
        "pull": "check, then dvc pull --run-cache (what `make pull` runs)",
    }.items():
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("-r", "--remote", default=None, help="remote name (default: core.remote)")
        sub.add_argument("--repo", type=Path, default=Path(), help="the DVC repository")
    args = parser.parse_args(argv)

    setup_logging()
    try:
        if args.action == "check":
            log.info("%s: reachable", check_remote(args.repo, args.remote))
        elif args.action == "push-run-outputs":
            log.info("%d object(s) uploaded", push_run_outputs(args.repo, args.remote))
        else:
            transfer(args.repo, args.remote, args.action)
    except RemoteError as exc:
        sys.stderr.write(f"remote: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
