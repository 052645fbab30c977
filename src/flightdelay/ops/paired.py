"""The test predictions of the base and of the head, paired flight by flight.

The evaluate stage writes its test predictions as a cached DVC output, so the base's copy is a
DVC object like any other, found (in this order) in:

1. the local DVC cache (the base was reproduced or pulled here before);
2. the DVC remote (``dvc.api`` streams it; CI's base was pushed by its own run);
3. neither: the base is recomputed, ``dvc repro`` of the stage that writes them in a temporary
   Git worktree of the base commit, running the base's own code and sharing this repository's
   DVC cache, so stages whose outputs are cached are checked out rather than rerun.

The head's are the working tree's. The report says which of the three it used.
"""

from __future__ import annotations

import io
import logging
import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray

from flightdelay.contract.schema import TARGET
from flightdelay.core.dvc import dvc
from flightdelay.core.errors import StageError
from flightdelay.core.git import git
from flightdelay.core.io import read_parquet
from flightdelay.pipeline.evaluate import PROBA, ROW

log = logging.getLogger(__name__)

FLAG = "--predictions"  # the evaluate stage's argument naming its predictions output


class UnpairedError(StageError):
    """The head's and the base's predictions cannot be paired (the message says why)."""


@dataclass(frozen=True)
class Paired:
    """Labels and both models' probabilities for the same test flights, in the same order."""

    y: NDArray[np.bool_]
    base: NDArray[np.float64]
    head: NDArray[np.float64]
    source: str  # where the base's predictions came from, as a phrase


@dataclass(frozen=True)
class Output:
    """The stage of dvc.yaml that writes the test predictions, and the file."""

    stage: str
    path: str


def declared(dvc_yaml: str) -> Output | None:
    """The predictions output of a dvc.yaml text: the stage whose command passes ``--predictions``.

    Raises:
        StageError: when the text is not YAML.
    """
    try:
        stages = (yaml.safe_load(dvc_yaml) or {}).get("stages", {})
    except yaml.YAMLError as exc:
        raise StageError(f"dvc.yaml is not YAML: {exc}") from exc
    for name, stage in stages.items():
        words = shlex.split(str(stage.get("cmd", "")))
        if FLAG in words[:-1]:
            return Output(name, words[words.index(FLAG) + 1])
    return None


def load(base: str, sha: str, repo: Path) -> Paired:
    """The head's (working tree) and the base's test predictions, paired by flight.

    Args:
        base: the base revision (for DVC).
        sha: its commit (for a worktree, should the base be recomputed).
        repo: the repository root.

    Raises:
        UnpairedError: naming why there is nothing to pair.
    """
    dvc_yaml = repo / "dvc.yaml"
    output = declared(dvc_yaml.read_text(encoding="utf-8")) if dvc_yaml.is_file() else None
    if output is None:
        raise UnpairedError("no stage of dvc.yaml writes test predictions")
    if not (repo / output.path).is_file():
        raise UnpairedError(f"the head has no {output.path}: run dvc repro")
    head = read_parquet(repo / output.path)
    try:
        base_output = declared(git(repo, "show", f"{sha}:dvc.yaml"))
    except StageError:  # no dvc.yaml at the base, or not YAML there
        base_output = None
    if base_output is None:
        raise UnpairedError("the base writes no test predictions (its pipeline predates them)")
    frame, source = _base_frame(base, sha, base_output, repo)
    return _pair(frame, head, source)


def _base_frame(base: str, sha: str, output: Output, repo: Path) -> tuple[pd.DataFrame, str]:
    """The base's predictions and where they came from: the cache, the remote, or recomputed."""
    from dvc.api import DVCFileSystem  # noqa: PLC0415 - DVC's API takes seconds to import

    fs = DVCFileSystem(str(repo), rev=base)
    try:
        md5 = fs.info(output.path).get("md5")
    except FileNotFoundError:
        md5 = None  # declared, but the base's dvc.lock records no hash: never reproduced
    if md5:
        cached = Path(fs.repo.cache.local.oid_to_path(md5)).is_file()
        try:  # DVC reads the local cache, else the remote
            frame = pd.read_parquet(io.BytesIO(fs.read_bytes(output.path)))
            return frame, "read from the local DVC cache" if cached else "read from the DVC remote"
        except Exception as exc:  # each storage backend raises its own errors: any means "absent"
            log.warning("the base's %s is not in the DVC cache or remote: %s", output.path, exc)
    log.info("recomputing the base's %s: dvc repro %s at %s", output.path, output.stage, sha[:7])
    return _recompute(sha, output, repo), f"recomputed (`dvc repro {output.stage}` of the base)"


def _recompute(sha: str, output: Output, repo: Path) -> pd.DataFrame:
    """``dvc repro`` of the output's stage in a temporary worktree of ``sha``; its output."""
    cache = dvc(["cache", "dir"], repo).strip()
    with tempfile.TemporaryDirectory(prefix="flightdelay-base-") as tmp:
        tree = Path(tmp) / "base"
        git(repo, "worktree", "add", "--detach", str(tree), sha)
        try:
            dvc(["cache", "dir", "--local", cache], tree)
            dvc(["repro", output.stage], tree, env=_imports_from(tree / "src"))
            if not (tree / output.path).is_file():
                raise UnpairedError(f"the base's dvc repro {output.stage} wrote no {output.path}")
            return read_parquet(tree / output.path)
        finally:
            git(repo, "worktree", "remove", "--force", str(tree))


def _imports_from(src: Path) -> dict[str, str]:
    """This environment, with stage commands importing ``src`` (the base's code) first."""
    before = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), before]))}


def _pair(base: pd.DataFrame, head: pd.DataFrame, source: str) -> Paired:
    """Both sides sorted by flight; the same flights with the same labels, or an error."""
    columns = [ROW, TARGET, PROBA]
    for name, frame in (("base", base), ("head", head)):
        if missing := [c for c in columns if c not in frame]:
            raise UnpairedError(f"the {name}'s predictions lack the columns {missing}")
    base, head = (f.sort_values(ROW, ignore_index=True) for f in (base, head))
    same = len(base) == len(head) and bool(
        (base[ROW].to_numpy() == head[ROW].to_numpy()).all()
        and (base[TARGET].to_numpy() == head[TARGET].to_numpy()).all()
    )
    if not same:
        raise UnpairedError(
            f"the base's {len(base)} and the head's {len(head)} test flights are not the same "
            "flights with the same labels (a features or split change): intervals need both "
            "models scored on the same flights"
        )
    y = head[TARGET].to_numpy(dtype=bool)
    if y.all() or not y.any():
        raise UnpairedError("the test flights hold one class only")
    return Paired(y, base[PROBA].to_numpy(np.float64), head[PROBA].to_numpy(np.float64), source)
