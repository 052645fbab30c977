"""Release tags, versions and requirements, on values built in the tests."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT
from flightdelay.core.errors import StageError
from flightdelay.ops.release import (
    Release,
    container_backend,
    current_release,
    headline,
    project_version,
    requirements_from_lock,
)


def test_tags_of_a_clean_release() -> None:
    release = Release("1.2.3", "abc1234")
    assert release.bento_tag == "flight-delay:1.2.3-abc1234"
    assert release.image_tags == ("flight-delay:1.2.3", "flight-delay:sha-abc1234")
    assert release.model_tag("deadbeef" * 8) == "flight-delay-model:1.2.3-abc1234-deadbeef"


def test_a_dirty_tree_marks_every_tag() -> None:
    release = Release("1.2.3", "abc1234", dirty=True)
    assert release.bento_tag == "flight-delay:1.2.3-abc1234-dirty"
    assert release.image_tags == ("flight-delay:1.2.3-dirty", "flight-delay:sha-abc1234-dirty")


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "01.2.3", "1.2.3+build", "1.2.3-RC1"])
def test_a_version_that_is_not_semver_is_refused(version: str) -> None:
    with pytest.raises(StageError, match=rf"version '{re.escape(version)}' is not semver"):
        Release(version, "abc1234")


def test_a_prerelease_is_semver() -> None:
    assert Release("2.0.0-rc.1", "abc1234").bento_tag == "flight-delay:2.0.0-rc.1-abc1234"


def test_a_bad_sha_is_refused() -> None:
    with pytest.raises(StageError, match="git sha 'ABC' is not 7"):
        Release("1.0.0", "ABC")


def test_project_version() -> None:
    assert project_version('[project]\nname = "x"\nversion = "0.4.1"\n') == "0.4.1"
    with pytest.raises(StageError, match=r"no \[project\]\.version"):
        project_version('[project]\nname = "x"\n')


def test_current_release_of_a_git_repository(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip

    git("init", "-q")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "3.1.4"\n')
    git("add", "-A")
    git("commit", "-qm", "x")
    release = current_release(tmp_path)
    assert (release.version, release.sha7, release.dirty) == (
        "3.1.4", git("rev-parse", "--short=7", "HEAD"), False,
    )  # fmt: skip
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "3.1.5"\n')
    assert current_release(tmp_path).bento_tag.endswith("-dirty")


def test_current_release_outside_git_names_the_failure(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="git rev-parse"):
        current_release(tmp_path)


LOCK = textwrap.dedent(
    """
    version = 1
    [[package]]
    name = "app"
    version = "1.0"
    dependencies = [
        { name = "lib" },
        { name = "winonly", marker = "sys_platform == 'win32'" },
        { name = "fs", extra = ["http"] },
    ]
    [[package]]
    name = "lib"
    version = "2.0"
    [[package]]
    name = "winonly"
    version = "0.1"
    dependencies = [{ name = "lib" }]
    [[package]]
    name = "fs"
    version = "3.0"
    [package.optional-dependencies]
    http = [{ name = "aiohttp" }]
    [[package]]
    name = "aiohttp"
    version = "4.0"
    [[package]]
    name = "unused"
    version = "9.9"
    """
)


def test_requirements_are_the_pinned_closure_with_markers_and_extras() -> None:
    assert requirements_from_lock(LOCK, ["app"]) == [
        "aiohttp==4.0",
        "app==1.0",
        "fs==3.0",
        "lib==2.0",
        "winonly==0.1 ; (sys_platform == 'win32')",
    ]


def test_requirements_of_an_unknown_package_fail() -> None:
    with pytest.raises(StageError, match="uv.lock: no package 'nope'"):
        requirements_from_lock(LOCK, ["nope"])


def test_service_requirements_from_the_real_lock() -> None:
    from flightdelay.ops.release import SERVICE_ROOTS  # noqa: PLC0415

    lock = (ROOT / "uv.lock").read_text()
    lines = requirements_from_lock(lock, SERVICE_ROOTS)
    names = {line.split("==")[0] for line in lines}
    assert {"bentoml", "numpy", "onnxruntime", "pydantic"} <= names
    # the service runs the compiled model only: none of the training stack goes into the image
    training = {"scikit-learn", "scipy", "pandas", "pandera", "pyarrow", "joblib"}
    assert not names & (training | {"dvc", "mlflow", "matplotlib", "pytest"})


def test_headline_keeps_test_metrics_and_the_dummy_auc() -> None:
    metrics = {"test.roc_auc": 0.7, "dummy.roc_auc": 0.5, "dummy.brier": 0.2, "slice.x": 1}
    assert headline(metrics) == {"test.roc_auc": 0.7, "dummy.roc_auc": 0.5}


def test_container_backend() -> None:
    assert container_backend(has_docker=True, has_buildah=True) == "docker"
    assert container_backend(has_docker=False, has_buildah=True) == "buildah"
    with pytest.raises(StageError, match="no container builder"):
        container_backend(has_docker=False, has_buildah=False)
