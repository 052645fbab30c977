"""Shared fixtures: the repository root and throwaway copies of it for real pipeline runs.

A test's folder is its kind: tests/unit (no marker), tests/integration (``integration``: real DVC
stages in a temporary repository) and tests/e2e (``e2e``: real servers on loopback). The marker is
added from the folder, and a test marked for another kind than its folder's is a usage error.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import annotated_types
import numpy as np
import pandas as pd
import pytest
import yaml

from flightdelay.contract.schema import RECORD_COLUMNS, TARGET, Flight

ROOT = Path(__file__).resolve().parents[1]
#: environment for child processes: the venv's python/dvc first on PATH, quiet git identity
CHILD_ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "flight-delay tests",
    "GIT_AUTHOR_EMAIL": "tests@flight-delay.invalid",
    "GIT_COMMITTER_NAME": "flight-delay tests",
    "GIT_COMMITTER_EMAIL": "tests@flight-delay.invalid",
    "DVC_NO_ANALYTICS": "1",
    "FLIGHTDELAY_TRACKING": "0",  # tests that check tracking turn it on themselves
}


#: .ci/run sets it: a test that would skip for want of a system tool or of the pipeline's outputs
#: fails instead, so CI runs every test (the vulnerability service, out of reach here, excepted)
REQUIRE_ALL = os.environ.get("FLIGHTDELAY_REQUIRE_ALL", "") == "1"
#: the kinds of test, by folder under tests/; unit tests carry no marker
KINDS = ("unit", "integration", "e2e")


def unavailable(why: str) -> NoReturn:
    """Skip a test that cannot run here, naming what enables it; fail where CI requires it."""
    if REQUIRE_ALL:
        pytest.fail(f"required (FLIGHTDELAY_REQUIRE_ALL=1) but cannot run: {why}", pytrace=False)
    pytest.skip(why)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its folder's kind; refuse a marker that contradicts the folder."""
    for item in items:
        kind = Path(item.path).relative_to(ROOT / "tests").parts[0]
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/{{{','.join(KINDS)}}}/")
        marked = {m.name for m in item.iter_markers()} & set(KINDS[1:])
        if marked - {kind}:
            raise pytest.UsageError(
                f"{item.nodeid} is marked {sorted(marked)} but lives in tests/{kind}/: move it"
            )
        if kind != "unit":
            item.add_marker(kind)


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` with the test environment; output captured as text."""
    # a copy runs its own src/ (the one its dvc.lock hashes), not the package installed in the venv
    env = {**CHILD_ENV, "PYTHONPATH": str(cwd / "src")} if (cwd / "src").is_dir() else CHILD_ENV
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def script(name: str) -> ModuleType:
    """A module of scripts/ (standalone tools, not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def copy_repo(dest: Path, sample_frac: float = 0.03) -> Path:
    """A fresh Git + DVC repository holding this project's files (not its data or cache), with
    params shrunk for speed: a sample of flights, few trees, short benchmark loops."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("metrics/", "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params_path = dest / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["ingest"]["sample_frac"] = sample_frac
    params["train"]["candidates"]["hgb"]["max_iter"] = 30
    params["train"]["candidates"]["logreg"]["max_iter"] = 1000
    params["evaluate"]["gates"] = {
        "min_roc_auc": 0.55,
        "max_brier": 0.25,
        "min_lift_over_dummy": 0.02,
    }
    params["benchmark"] = {"single_rows": 20, "batch_size": 10, "batches": 5, "bulk_rows": 1000}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy of flight-delay for tests"], dest)
    return dest


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sampled pipeline run shared by the read-only integration tests (do not modify it)."""
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro"], repo)
    yield repo


def _bounds(name: str) -> tuple[float, float]:
    meta = Flight.model_fields[name].metadata
    lo = next(m.ge for m in meta if isinstance(m, annotated_types.Ge))
    hi = next(m.le for m in meta if isinstance(m, annotated_types.Le))
    return float(lo), float(hi)


def make_records(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Synthetic labelled flight records, valid under the contract; evening departures and rain
    make delays likelier, so a model has something to learn."""
    rng = np.random.default_rng(seed)
    dep = rng.integers(5, 23, n) * 100 + rng.integers(0, 60, n)
    precip = np.where(rng.random(n) < 0.2, rng.uniform(0, 0.5, n), 0.0)
    logit = -2.0 + (dep // 100 - 12) * 0.15 + precip * 6
    frame = pd.DataFrame(
        {
            "year": 2013,
            "month": rng.integers(1, 13, n),
            "day": rng.integers(1, 29, n),
            "sched_dep_time": dep,
            "sched_arr_time": (dep + 200) % 2400,
            "carrier": rng.choice(["UA", "AA", "B6"], n),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "dest": rng.choice(["ORD", "ATL", "LAX", "BOS"], n),
            "distance": rng.uniform(200, 2500, n).round(),
            "tailnum": rng.choice(["N1", "N2", "N3", None], n),
        }
    )
    for name in RECORD_COLUMNS:
        if name not in frame:  # other weather: anywhere within the contract's bounds, 10% missing
            lo, hi = _bounds(name)
            frame[name] = np.where(rng.random(n) < 0.1, np.nan, rng.uniform(lo, hi, n).round(1))
    frame["precip"] = precip
    frame["visib"] = rng.uniform(0, 10, n)
    frame[TARGET] = rng.random(n) < 1 / (1 + np.exp(-logit))
    return frame[[*RECORD_COLUMNS, TARGET]]


PLANES = pd.DataFrame(
    {
        "tailnum": ["N1", "N2", "N3"],
        "year": [1999.0, np.nan, 2010.0],
        "seats": [55, 180, 300],
        "engines": [2, 2, 4],
    }
)
