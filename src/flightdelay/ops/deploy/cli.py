"""``flightdelay deploy`` and ``flightdelay rollback``.

    flightdelay deploy --env staging flight-delay:0.1.0-abc1234   # blue-green deploy of a Bento
    flightdelay deploy status [--env staging] [--json]            # what serves where
    flightdelay deploy stop --env staging                         # stop its proxy and colours
    flightdelay rollback --env production                         # the Bento that passed before

Exit status 0 only when the Bento passed; a deploy that failed, was rolled back or interrupted
exits 1 and its record in the state file says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flightdelay.core.errors import StageError
from flightdelay.core.io import run_main
from flightdelay.ops.deploy.colour import alive, stop
from flightdelay.ops.deploy.config import environment, load_environments
from flightdelay.ops.deploy.rollout import Target, deploy, reconcile, rollback
from flightdelay.ops.deploy.state import Record, deploy_dir, load_state, save_state

DEFAULT_ENVIRONMENTS = Path("deploy/environments.yaml")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", help="the environment (deploy/environments.yaml)")
    parser.add_argument(
        "--environments",
        type=Path,
        default=DEFAULT_ENVIRONMENTS,
        help="the environments file; nginx.conf beside it is the proxy's template",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="state, proxies and logs (default: $FLIGHTDELAY_DEPLOY_DIR or .deploy)",
    )
    return parser


def _target(args: argparse.Namespace) -> Target:
    if not args.env:
        raise StageError("--env is required")
    env = environment(args.environments, args.env)
    return Target(env, deploy_dir(args.dir).resolve(), args.environments.parent / "nginx.conf")


def _outcome(record: Record) -> None:
    line = f"{record.environment}: {record.action} of {record.bento} on {record.colour}: "
    line += record.outcome + (f": {record.reason}" if record.reason else "")
    if record.outcome != "passed":
        raise StageError(line)
    sys.stdout.write(line + "\n")


def status(args: argparse.Namespace) -> None:
    root = deploy_dir(args.dir)
    names = [args.env] if args.env else list(load_environments(args.environments))
    report = {}
    for name in names:
        state = load_state(root, name)
        live = state.live
        report[name] = {
            "live": live.model_dump() | {"up": alive(live.pid)} if live is not None else None,
            "pending": state.pending.model_dump() if state.pending is not None else None,
            "last": state.history[-1].model_dump() if state.history else None,
        }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    for name, facts in report.items():
        up, last = facts["live"], facts["last"]
        serving = (f"{up['colour']} serves {up['bento']} ({'up' if up['up'] else 'DOWN'})"
                   if up else "nothing deployed")  # fmt: skip
        sys.stdout.write(f"{name}: {serving}\n")
        if last:
            sys.stdout.write(f"  last: {last['action']} {last['bento']} at {last['finished']}: "
                             f"{last['outcome']} {last['reason']}\n")  # fmt: skip


def stop_all(target: Target) -> None:
    """Stop the environment's proxy and colours; the state keeps its history, nothing is live."""
    state = load_state(target.root, target.env.name)
    reconcile(target, state)
    target.router().stop()
    if state.live is not None:
        stop(state.live.pid)
    state.live = None
    save_state(target.root, state)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser("flightdelay deploy")
    parser.add_argument("what", help="a Bento tag, or: status, stop")
    parser.add_argument("--json", action="store_true", help="status: as JSON")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.what == "status":
            status(args)
        elif args.what == "stop":
            stop_all(_target(args))
        else:
            _outcome(deploy(_target(args), args.what))

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per probe
    return run_main("deploy", body)


def rollback_main(argv: Sequence[str] | None = None) -> int:
    args = _parser("flightdelay rollback").parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return run_main("rollback", lambda: _outcome(rollback(_target(args))))


if __name__ == "__main__":
    raise SystemExit(main())
