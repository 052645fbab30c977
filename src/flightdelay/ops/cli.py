"""The ``flightdelay`` command: one entry point for the project's user-facing tools.

Each subcommand lives in its own module with a ``main(argv) -> int`` (or the function named after
a colon); it is imported only when called, so ``flightdelay --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("flightdelay.pipeline.ingest", "stage 1: validate source tables, write Parquet"),
    "features": ("flightdelay.pipeline.features", "stage 2: flight records, target and split"),
    "train": ("flightdelay.pipeline.train", "stage 3: fit candidates, pick and refit the winner"),
    "evaluate": (
        "flightdelay.pipeline.evaluate",
        "stage 4: test metrics, slices, plots, quality gates",
    ),
    "benchmark": ("flightdelay.pipeline.benchmark", "stage 5: latency, throughput, size, memory"),
    "report": ("flightdelay.ops.report", "the pull-request report: metrics/params/plots vs a base"),
    "remote": ("flightdelay.ops.remote", "DVC remote: check access, push run-cache outputs"),
    "promote": (
        "flightdelay.ops.promote",
        "apply the best DVC experiment, register it as champion",
    ),
    "score": ("flightdelay.ops.score", "score a file of flights in chunks: predictions, rejects"),
    "bento": ("flightdelay.ops.release", "[bento|container|tags] build the Bento, its image; tags"),
    "deploy": (
        "flightdelay.ops.deploy.cli",
        "blue-green deploy of a Bento to an environment; status",
    ),
    "rollback": (
        "flightdelay.ops.deploy.cli:rollback_main",
        "deploy again the Bento that passed before",
    ),
    "docs": ("flightdelay.ops.docs", "rewrite the docs' tables from metrics/*.json (--check)"),
    "notify": ("flightdelay.ops.notify", "post --text to the webhook URL in --webhook-env's var"),
}


def _usage() -> str:
    lines = ["usage: flightdelay <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"}:
        sys.stdout.write(_usage())
        return 0
    if args[0] not in COMMANDS:
        sys.stderr.write(f"flightdelay: unknown command {args[0]!r}\n\n{_usage()}")
        return 2
    module, _, function = COMMANDS[args[0]][0].partition(":")
    code: int = getattr(importlib.import_module(module), function or "main")(args[1:])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
