"""The train stage's MLflow logging in a child process that gets ready while the models fit.

Importing MLflow and opening its store (SQLite schema, experiment) costs about 2 s of CPU, a tenth
of train. ``Child.start`` runs ``python -m flightdelay.tracking.child`` at the start of train: it
does that work on the core the first fit leaves idle, then waits. ``Child.finish`` hands it what
train produced (paths of the written outputs, the fit times, the tags) as one JSON line on stdin
and waits for ``tracking.runs.log_train`` to finish there; a failure in the child is raised in
train as the same one-line ``TrackingError`` as before. Outputs are written before the child is
handed anything, so they never depend on tracking.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from flightdelay.core.errors import StageError
from flightdelay.core.io import setup_logging
from flightdelay.tracking import runs

FAILED = 3  # the child's exit code after writing a one-line error to stdout
EXAMPLE_ROWS = 5  # flight records logged with the MLflow model as its input example


@dataclass(frozen=True)
class Job:
    """What the child needs to log a finished train run (all of it JSON-ready)."""

    params: str
    features: str  # directory of the feature tables: the input example comes from valid.parquet
    model: str
    winner: str
    metrics: dict[str, Any]
    fit_seconds: dict[str, float]
    tags: dict[str, str]


class Child:
    """A started ``python -m flightdelay.tracking.child``: warming up, then waiting for its job."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    @classmethod
    def start(cls, found: runs.Settings) -> Child:
        cmd = [sys.executable, "-m", __name__, found.uri, found.experiment]
        cmd += [found.artifact_location] if found.artifact_location else []
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, fixed module
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        return cls(proc)

    def finish(self, job: Job) -> None:
        """Hand over the job and wait until it is logged.

        Raises:
            TrackingError: the store could not be reached or refused the write (the child's line).
        """
        # a child that failed during warm-up is gone: communicate() ignores the broken pipe
        out, _ = self.proc.communicate(json.dumps(asdict(job)) + "\n")
        if self.proc.returncode == FAILED:
            raise runs.TrackingError(out.strip().splitlines()[-1])
        if self.proc.returncode != 0:
            raise runs.TrackingError(f"tracking process exited with {self.proc.returncode}")

    def stop(self) -> None:
        """End the child if train failed before handing it a job."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _log(job: Job, found: runs.Settings) -> None:
    from flightdelay.contract.schema import TARGET  # noqa: PLC0415
    from flightdelay.core.io import read_parquet  # noqa: PLC0415
    from flightdelay.core.params import load_params  # noqa: PLC0415
    from flightdelay.model.store import load_model  # noqa: PLC0415

    model = load_model(job.model)
    example = read_parquet(Path(job.features) / "valid.parquet").drop(columns=[TARGET])
    result = runs.TrainRun(job.winner, model, job.metrics, job.fit_seconds)
    runs.log_train(result, load_params(job.params), example.head(EXAMPLE_ROWS), found, job.tags)


def serve(found: runs.Settings, stdin: IO[str]) -> None:
    """Warm up (imports, store, experiment), then log the one job read from ``stdin``."""
    runs.warm_up(found)
    line = stdin.readline()
    if line:  # EOF: train failed before the job, nothing to log
        _log(Job(**json.loads(line)), found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri")
    parser.add_argument("experiment")
    parser.add_argument("artifact_location", nargs="?")
    args = parser.parse_args(argv)
    setup_logging()
    os.nice(10)  # the fits come first: the warm-up takes the CPU they leave idle
    try:
        serve(runs.Settings(args.uri, args.experiment, args.artifact_location), sys.stdin)
    except StageError as exc:
        print(exc, flush=True)  # noqa: T201 - the one line the parent raises
        return FAILED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
