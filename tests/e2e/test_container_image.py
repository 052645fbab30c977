"""The OCI image: deploy/Containerfile over the exported Bento (buildah here, Docker where an
engine runs), under 500 MB, then the smoke test (scripts/container-smoke.sh) that decides
whether a build counts."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from bento_helpers import release, release_env, release_repo, tags

from conftest import unavailable
from flightdelay.ops.release import container_backend, docker_running

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
#: what makes this test runnable on a Debian machine (what .ci/run does)
ENABLE = "apt-get install -y buildah debootstrap && scripts/base-image.sh"
ROOT = Path(__file__).resolve().parents[2]
MAX_MB = 500  # wheels only: the base (about 180 MB) and the service's packages
log = logging.getLogger(__name__)


def _backend() -> str:
    return container_backend(docker_running(), shutil.which("buildah") is not None)


def _base_image_present() -> bool:
    if _backend() == "docker":
        return True
    done = subprocess.run(
        ["buildah", "inspect", "--type", "image", "python:3.11-slim"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_image_builds_with_both_tags_and_passes_the_smoke_test(
    small_repo: Path, tmp_path: Path
) -> None:
    if not docker_running() and shutil.which("buildah") is None:
        unavailable(f"no container builder (a Docker engine or buildah): {ENABLE}")
    if not _base_image_present():
        unavailable(f"base image python:3.11-slim missing: {ENABLE}")
    repo = release_repo(tmp_path / "repo", small_repo)
    home = tmp_path / "bentoml"
    release(repo, home, "bento")
    images = [str(t) for t in tags(repo, home)["images"]]  # type: ignore[attr-defined]
    release(repo, home, "container")
    try:
        _check_one_image_and_smoke(images, home)
    finally:  # each run's throwaway commit makes new tags: do not pile up images
        tool = _backend()
        done = subprocess.run(
            [tool, "rmi", "-f", *images], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            warnings.warn(f"{tool} rmi {images}: {done.stderr.strip()}", stacklevel=1)


def _check_one_image_and_smoke(images: list[str], home: Path) -> None:
    if _backend() == "buildah":
        ids = {
            json.loads(
                subprocess.run(
                    ["buildah", "inspect", "--type", "image", image],
                    capture_output=True, text=True, check=True,
                ).stdout
            )["FromImageID"]
            for image in images
        }  # fmt: skip
        assert len(ids) == 1, f"{images} are not one image: {ids}"
    size = _image_mb(images[0])
    log.warning("image %s: %.0f MB", images[0], size)
    assert size < MAX_MB
    smoke = subprocess.run(
        [str(ROOT / "scripts/container-smoke.sh"), images[1]],
        env=release_env(home), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "OK:" in smoke.stdout


def _image_mb(image: str) -> float:
    """The image's size in MB (10^6 bytes, as both tools print it)."""
    if _backend() == "docker":
        out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return int(out.strip()) / 1e6
    cmd = ["buildah", "images", "--json", image]
    listed = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    number, unit = re.fullmatch(r"([\d.]+) ([kMG]B)", listed[0]["size"]).groups()  # type: ignore[union-attr]
    return float(number) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]
