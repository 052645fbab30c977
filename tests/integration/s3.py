"""A real S3 API on loopback for DVC remote tests: moto's threaded server, as dvc-s3 tests it.

The server runs in the test process; DVC runs as a child process and reaches it over HTTP with
fake credentials from the environment, never from ~/.aws.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from conftest import CHILD_ENV

REMOTE = "storage"  # the default remote named in .dvc/config
BUCKET = "flight-delay-dvc"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
#: a path that does not exist (os.devnull is refused by botocore's config loader)
NO_FILE = str(Path(tempfile.gettempdir()) / "flight-delay-tests" / "no-such-aws-file")


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto on a free loopback port (the OS picks it); yield its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_env(credentials: dict[str, str] | None = None) -> dict[str, str]:
    """The child environment: only the given credentials, no AWS config files, no EC2 metadata
    lookups, no endpoint variables (the endpoint comes from the remote's config), one attempt
    per request so that failures show up in seconds."""
    env = {k: v for k, v in CHILD_ENV.items() if not k.startswith(("AWS_", "FSSPEC_S3_"))}
    return {
        **env,
        **(CREDENTIALS if credentials is None else credentials),
        "AWS_CONFIG_FILE": NO_FILE,
        "AWS_SHARED_CREDENTIALS_FILE": NO_FILE,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }


def run_s3(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command against the S3 server (``s3_env()`` unless ``env`` is given)."""
    result = subprocess.run(
        cmd, cwd=cwd, env=env or s3_env(), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def client(endpoint: str) -> Any:
    """A boto3 S3 client on the server, for setting up and inspecting buckets."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def keys(endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` in ``bucket``."""
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@contextmanager
def auth_enforced(endpoint: str) -> Iterator[None]:
    """Make moto check credentials (it accepts any by default); no IAM user exists, so every
    access key is unknown. The switch is process-wide: restored on exit."""

    def reset_auth(count: str) -> dict[str, str]:
        request = urllib.request.Request(  # noqa: S310 - loopback http to the test's own server
            f"{endpoint}/moto-api/reset-auth",
            data=count.encode(),
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, str] = json.load(response)
        return answer

    previous = reset_auth("0")["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        yield
    finally:
        reset_auth(previous)


def set_endpoint(repo: Path, endpoint: str, remote: str = REMOTE) -> None:
    """Point ``remote`` at ``endpoint`` in the repo's untracked ``.dvc/config.local``."""
    run_s3(["dvc", "remote", "modify", "--local", remote, "endpointurl", endpoint], repo)


def add_remote(repo: Path, name: str, url: str, endpoint: str) -> None:
    """Add remote ``name`` to ``.dvc/config.local``: the lines ``dvc remote add --local`` and
    ``dvc remote modify --local ... endpointurl`` write, without two more DVC start-ups."""
    with (repo / ".dvc" / "config.local").open("a", encoding="utf-8") as config:
        config.write(f"['remote \"{name}\"']\n    url = {url}\n    endpointurl = {endpoint}\n")


def workspace(repo: Path) -> dict[str, int]:
    """Every file outside .git and .dvc with its size: what a failed command must not change."""
    return {
        path.relative_to(repo).as_posix(): path.stat().st_size
        for path in sorted(repo.rglob("*"))
        if path.is_file() and path.relative_to(repo).parts[0] not in {".git", ".dvc"}
    }


class Link:
    """A TCP relay on a loopback port to the S3 server, at a bounded rate, that can be cut and
    brought back on the same port: the network path to the store going away in the middle of a
    transfer, and returning. The store behind it stays the real moto server.

    Args:
        endpoint: the server's ``http://host:port``.
        bytes_per_s: the rate each direction of each connection is held to.
    """

    def __init__(self, endpoint: str, bytes_per_s: int) -> None:
        host, port = endpoint.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.rate = bytes_per_s
        self.relayed = 0  # bytes passed on, both directions, since the start
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Link:
        """Listen (on the port of the first start, when started again) and relay."""
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Close the port and reset every open connection."""
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:  # cut
                return
            far = socket.create_connection(self.target)
            with self._lock:
                self._open |= {near, far}
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(16384):
                dst.sendall(chunk)
                with self._lock:
                    self.relayed += len(chunk)
                time.sleep(len(chunk) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
