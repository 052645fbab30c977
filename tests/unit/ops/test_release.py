"""Release tags, versions, requirements, the DVC outputs check and the image labels, on values
built in the tests."""

from __future__ import annotations

import hashlib
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from flightdelay.core.dvc import file_md5
from flightdelay.core.errors import StageError
from flightdelay.ops.release import (
    Release,
    build_time,
    check_locked_outputs,
    container_backend,
    containerize_command,
    current_release,
    headline,
    locked_md5s,
    oci_labels,
    project_version,
    requirements_from_lock,
)
from flightdelay.ops.release import main as release_main


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
    assert {"bentoml", "model-signing", "numpy", "onnxruntime", "pydantic", "pyopenssl"} <= names
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


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _lock(model: str, metrics: str | None) -> str:
    """A tiny dvc.lock as DVC writes it: the model out of train, evaluate.json (cache: false) out
    of evaluate; ``metrics=None`` leaves the evaluate stage out."""

    def out(path: str, md5: str) -> dict[str, object]:
        return {"path": path, "hash": "md5", "md5": md5, "size": 5}

    stages: dict[str, object] = {
        "train": {
            "cmd": "python -m train",
            "deps": [out("data/features/train.parquet", "0123456789abcdef0123456789abcdef")],
            "outs": [out("models/model.joblib", model)],
        },
        "gate": {"cmd": "python -m gate"},  # a stage without outputs has no `outs` key
    }
    if metrics is not None:
        stages["evaluate"] = {
            "cmd": "python -m evaluate",
            "outs": [out("metrics/evaluate.json", metrics), out("plots/roc.csv", "0" * 32)],
        }
    return yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False)


@pytest.fixture
def outputs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "models").mkdir()
    (tmp_path / "metrics").mkdir()
    (tmp_path / "models" / "model.joblib").write_bytes(b"model")
    (tmp_path / "metrics" / "evaluate.json").write_bytes(b"{}")
    return tmp_path / "models" / "model.joblib", tmp_path / "metrics" / "evaluate.json"


def test_file_md5_is_dvcs_md5_of_the_bytes(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"model")
    assert file_md5(tmp_path / "f") == _md5(b"model")


def test_outputs_that_match_dvc_lock_pass_and_give_their_md5(
    tmp_path: Path, outputs: tuple[Path, Path]
) -> None:
    (tmp_path / "dvc.lock").write_text(_lock(_md5(b"model"), _md5(b"{}")))
    assert check_locked_outputs(tmp_path, list(outputs)) == [_md5(b"model"), _md5(b"{}")]


def test_a_model_from_another_run_is_refused_by_name(
    tmp_path: Path, outputs: tuple[Path, Path]
) -> None:
    """The case `dvc status` reports as "train: changed outs: modified: models/model.joblib"."""
    (tmp_path / "dvc.lock").write_text(_lock(_md5(b"model"), _md5(b"{}")))
    other = b"a model from another branch's run"
    outputs[0].write_bytes(other)
    with pytest.raises(
        StageError,
        match=rf"models/model\.joblib has md5 {_md5(other)}, dvc\.lock records {_md5(b'model')}",
    ) as caught:
        check_locked_outputs(tmp_path, list(outputs))
    assert "evaluate.json" not in str(caught.value)  # only what differs is named


def test_an_output_without_a_lock_entry_is_refused(
    tmp_path: Path, outputs: tuple[Path, Path]
) -> None:
    (tmp_path / "dvc.lock").write_text(_lock(_md5(b"model"), metrics=None))
    with pytest.raises(StageError, match=r"metrics/evaluate\.json is not an output in dvc\.lock"):
        check_locked_outputs(tmp_path, list(outputs))


def test_a_missing_output_is_refused(tmp_path: Path, outputs: tuple[Path, Path]) -> None:
    (tmp_path / "dvc.lock").write_text(_lock(_md5(b"model"), _md5(b"{}")))
    outputs[0].unlink()
    with pytest.raises(StageError, match=r"models/model\.joblib is missing"):
        check_locked_outputs(tmp_path, list(outputs))


def test_a_repository_without_dvc_lock_is_unchecked_with_a_warning(
    tmp_path: Path, outputs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    assert check_locked_outputs(tmp_path, list(outputs)) == [_md5(b"model"), _md5(b"{}")]
    assert "no dvc.lock" in caplog.text


def test_a_lock_that_is_not_a_lock_is_refused() -> None:
    with pytest.raises(StageError, match="dvc.lock: not a DVC lock file"):
        locked_md5s("stages: [1, 2]\n")


def test_the_real_dvc_lock_records_what_a_release_packs() -> None:
    """metrics/evaluate.json is `cache: false`, yet dvc.lock lists it among evaluate's outs."""
    locked = locked_md5s((ROOT / "dvc.lock").read_text())
    assert {"models/model.joblib", "metrics/evaluate.json"} <= set(locked)
    assert all(re.fullmatch(r"[0-9a-f]{32}(\.dir)?", md5) for md5 in locked.values())


def test_oci_labels() -> None:
    labels = oci_labels(
        Release("1.2.3", "abc1234"), "abc1234" + "0" * 33, "2026-01-02T03:04:05Z",
        "https://github.com/o/flight-delay",
    )  # fmt: skip
    assert labels == {
        "org.opencontainers.image.created": "2026-01-02T03:04:05Z",
        "org.opencontainers.image.revision": "abc1234" + "0" * 33,
        "org.opencontainers.image.source": "https://github.com/o/flight-delay",
        "org.opencontainers.image.version": "1.2.3",
    }
    dirty = oci_labels(Release("1.2.3", "abc1234", dirty=True), "abc1234", "t")
    assert dirty["org.opencontainers.image.revision"] == "abc1234-dirty"
    assert "org.opencontainers.image.source" not in dirty


def test_build_time_is_rfc3339_utc_and_honours_source_date_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert build_time() == "2026-01-01T00:00:00Z"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", build_time())


def test_containerize_passes_both_tags_and_the_labels_to_the_builder() -> None:
    """A label keeps its own `=` and `:` (a URL, a time): the builder splits at the first `=`."""
    release = Release("1.2.3", "abc1234")
    labels = {"b.key": "2", "a.key": "https://x/y", "c.created": "2026-01-02T03:04:05Z"}
    file, context = Path("/repo/deploy/Containerfile"), Path("/build/ctx")
    for backend, start in (
        ("buildah", ["buildah", "build", "--layers"]),
        ("docker", ["docker", "build"]),
    ):
        assert containerize_command(release, backend, labels, file, context) == [
            *start, "-f", "/repo/deploy/Containerfile",
            "-t", "flight-delay:1.2.3", "-t", "flight-delay:sha-abc1234",
            "--label", "a.key=https://x/y", "--label", "b.key=2",
            "--label", "c.created=2026-01-02T03:04:05Z", "/build/ctx",
        ]  # fmt: skip


def test_the_containerfile_installs_wheels_only() -> None:
    """No compiler, no git, no package cache: the Containerfile's packages come as wheels."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert "--only-binary=:all:" in text and "--no-deps" in text
    assert "PIP_NO_CACHE_DIR=1" in text
    assert not re.search(r"apt-get|build-essential|\bgit\b|gcc", text.split("FROM", 1)[1])


def test_make_bento_refuses_a_model_that_is_not_the_commits(
    tmp_path: Path,
    outputs: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A clean Git tree (the model is a DVC output, not tracked) whose model is another run's:
    refused in one line before anything is imported, though no tag would say `-dirty`."""
    (tmp_path / "dvc.lock").write_text(_lock(_md5(b"model"), _md5(b"{}")))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.1.0"\n')
    (tmp_path / ".gitignore").write_text("/models\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
            cwd=tmp_path, check=True, capture_output=True,
        )  # fmt: skip
    outputs[0].write_bytes(b"a model from another branch's run")
    monkeypatch.chdir(tmp_path)
    assert not current_release(tmp_path).dirty
    argv = ["bento", "--model", "models/model.joblib", "--params", "params.yaml"]
    assert release_main([*argv, "--metrics", "metrics/evaluate.json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("release: error: the DVC outputs are not this commit's: ")
    assert "models/model.joblib has md5" in err[-1]
