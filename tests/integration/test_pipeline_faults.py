"""The pipeline under faults: `dvc repro` interrupted mid-train, and a corrupt local cache.

What DVC 3.67 does with a corrupt cache object (shown by the tests below, not assumed):

* an object made writable and changed is caught: DVC re-hashes objects it finds unprotected,
  reports the output ``not in cache`` and deletes the bad object;
* an object changed while it stays read-only (bit rot, a tool running as root) is trusted:
  ``dvc status`` says up to date, ``dvc checkout`` copies the bad bytes into the workspace, and
  ``dvc status`` still says up to date afterwards. ``scripts/verify_cache.py`` re-hashes the cache
  and the outputs in dvc.lock and finds it; with ``--remove`` DVC sees the object as missing and
  ``dvc repro`` rebuilds exactly the recorded result.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import CHILD_ENV, ROOT, run

pytestmark = pytest.mark.integration
RESULTS = ("metrics/train.json", "metrics/evaluate.json")
#: a shell that runs this suite in the background starts it with SIGINT ignored, and an ignored
#: signal stays ignored across exec: give `dvc repro` the default a terminal has
DVC_WITH_DEFAULT_SIGINT = (
    "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp('dvc', ['dvc', 'repro'])"
)


def _train_process(dvc_pid: int) -> psutil.Process | None:
    for child in psutil.Process(dvc_pid).children(recursive=True):
        try:
            if "flightdelay.pipeline.train" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


def _interrupt_during_train(repo: Path, timeout_s: float = 600) -> tuple[int, str, bool]:
    """`dvc repro` in its own process group, which gets SIGINT (a terminal's Ctrl-C) 0.3 s
    after the train stage's process started (it spends longer than that importing and fitting).
    Returns the exit status, the output and whether train was still running when signalled."""
    env = {**CHILD_ENV, "PYTHONPATH": str(repo / "src")}
    with (repo.parent / "repro.log").open("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", DVC_WITH_DEFAULT_SIGINT],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        train = None
        while train is None and proc.poll() is None and time.monotonic() < deadline:
            train = _train_process(proc.pid)
            time.sleep(0.02)
        assert train is not None, f"train never started:\n{Path(out.name).read_text()[-3000:]}"
        time.sleep(0.3)
        running = train.is_running()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
        return code, Path(out.name).read_text(), running


@pytest.mark.slow
def test_repro_interrupted_during_train_reruns_to_the_uninterrupted_result(
    small_repo: Path, tmp_path: Path
) -> None:
    """A copy of the sampled run without its model, metrics and local cache: `dvc repro` must
    re-run train and evaluate (ingest and features are up to date) and is interrupted
    mid-train; the rerun is a plain `dvc repro`."""
    repo = _copy(small_repo, tmp_path / "repo")
    shutil.rmtree(repo / ".dvc/cache")
    for rel in (*RESULTS, "models/model.joblib"):
        (repo / rel).unlink()
    code, output, running = _interrupt_during_train(repo)
    assert running, "train finished before the signal"
    assert code != 0, output[-3000:]
    assert "failed to reproduce 'train'" in output, output[-3000:]
    # atomic writes: nothing half-written is left where the next run would read it
    assert not (repo / "models/model.joblib").exists()
    assert not (repo / "metrics/train.json").exists()
    assert sorted(p.name for p in (repo / "models").iterdir()) == [".gitignore"]
    status = run(["dvc", "status"], repo).stdout
    assert "train:" in status, status

    rerun = run(["dvc", "repro"], repo).stdout
    assert "Stage 'features' didn't change, skipping" in rerun, rerun
    assert "Running stage 'train'" in rerun, rerun
    assert "Running stage 'evaluate'" in rerun, rerun
    for rel in RESULTS:
        assert (repo / rel).read_bytes() == (small_repo / rel).read_bytes(), rel
    assert "Data and pipelines are up to date." in run(["dvc", "status"], repo).stdout


def _copy(small_repo: Path, dest: Path) -> Path:
    shutil.copytree(small_repo, dest, symlinks=True)
    return dest


def _model_object(repo: Path) -> tuple[Path, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (out,) = [o for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model.joblib"]
    md5: str = out["md5"]
    return repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:], md5


def _flip_bytes(path: Path, keep_protection: bool) -> None:
    """Overwrite a few bytes in the middle; bit rot keeps mode and modification time."""
    stat = path.stat()
    path.chmod(0o644)
    with path.open("r+b") as fh:
        fh.seek(stat.st_size // 2)
        fh.write(b"\x00CORRUPT\x00")
    if keep_protection:
        path.chmod(stat.st_mode)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _md5(path: Path) -> str:
    import hashlib  # noqa: PLC0415

    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_writable_corrupt_cache_object_is_caught_by_dvc(small_repo: Path, tmp_path: Path) -> None:
    repo = _copy(small_repo, tmp_path / "repo")
    obj, _ = _model_object(repo)
    _flip_bytes(obj, keep_protection=False)
    status = run(["dvc", "status"], repo).stdout
    assert "not in cache:       models/model.joblib" in status, status
    assert not obj.exists(), "DVC keeps a corrupt object it has found"


def test_read_only_corrupt_cache_object_is_found_by_rehashing_and_rebuilt(
    small_repo: Path, tmp_path: Path
) -> None:
    repo = _copy(small_repo, tmp_path / "repo")
    obj, md5 = _model_object(repo)
    _flip_bytes(obj, keep_protection=True)
    model = repo / "models/model.joblib"
    model.unlink()
    run(["dvc", "checkout"], repo)
    # DVC 3.67's own view: the corrupt object is used silently and the result looks clean
    assert _md5(model) != md5
    assert "Data and pipelines are up to date." in run(["dvc", "status"], repo).stdout

    verify = [sys.executable, str(ROOT / "scripts/verify_cache.py")]
    found = run(verify, repo, check=False)
    assert found.returncode == 1
    assert f"corrupt cache object {obj.relative_to(repo)}" in found.stderr, found.stderr
    assert "models/model.joblib: content differs from dvc.lock" in found.stderr, found.stderr

    run([*verify, "--remove"], repo, check=False)
    assert "not in cache:       models/model.joblib" in run(["dvc", "status"], repo).stdout
    rebuilt = run(["dvc", "repro"], repo).stdout
    assert "Running stage 'train'" in rebuilt, rebuilt
    assert _md5(model) == md5 == _md5(obj)
    for rel in RESULTS:
        assert (repo / rel).read_bytes() == (small_repo / rel).read_bytes(), rel
    assert run(verify, repo, check=False).returncode == 0
