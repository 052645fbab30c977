"""A deploy, from the idle colour's start to its taking all traffic, or back to where it began.

The steps, each recorded in the state file before the next one begins:

1. reconcile: a colour an earlier deploy left ``pending`` is stopped, the live one routed to;
2. start the idle colour with the new Bento, wait for ``/readyz``, smoke-test it directly; a
   failure here stops it, and it never took a request;
3. shift traffic in ``steps`` (graceful reloads), watching the new colour at each one, then for
   ``watch_s`` at 100 % with the old colour as nginx's backup;
4. on success, route to the new colour alone, let nginx's old workers drain, stop the old colour;
   on a failed window, route back to the old colour at once and stop the new one.

An interrupt (SIGINT, SIGTERM) at any step takes the same way back as a failed window.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from flightdelay.ops.deploy.colour import BentoInfo, alive, bento_info, start, stop, wait_ready
from flightdelay.ops.deploy.config import COLOURS, Colour, DeployError, Environment
from flightdelay.ops.deploy.router import BACKUP, Router
from flightdelay.ops.deploy.smoke import reference_flights, smoke
from flightdelay.ops.deploy.state import (
    Outcome,
    Record,
    Serving,
    State,
    load_state,
    now,
    save_state,
)
from flightdelay.ops.deploy.watch import Probes, watch
from flightdelay.ops.signing import trust
from flightdelay.serving.signature import PUBLIC_KEY_ENV, SignatureError, verify
from flightdelay.tracking import registry, runs

log = logging.getLogger(__name__)


class Interrupted(Exception):  # noqa: N818 - a signal, not an error
    """SIGINT or SIGTERM arrived during a deploy."""


@dataclass(frozen=True)
class Target:
    """Where a deploy runs: the environment, the folder of its state, and nginx's template."""

    env: Environment
    root: Path
    template: Path

    def router(self) -> Router:
        return Router(self.root / self.env.name / "nginx", self.env.port, self.template)

    def log_path(self, colour: Colour) -> Path:
        return self.root / self.env.name / f"{colour}.log"

    def route_to(self, colour: Colour) -> None:
        """All traffic to ``colour`` (starting nginx if it is not running)."""
        self.router().route({self.env.colours[colour]: 100})


@contextmanager
def _on_signals(
    handler: Callable[[int, FrameType | None], None] | signal.Handlers,
) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside; outside, they are as they were."""
    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def _interrupt(signum: int, _: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def interruptible() -> AbstractContextManager[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` inside."""
    return _on_signals(_interrupt)


def uninterrupted() -> AbstractContextManager[None]:
    """Signals are ignored while the environment is put back (a second Ctrl-C must not cut that
    short)."""
    return _on_signals(signal.SIG_IGN)


def other(colour: Colour) -> Colour:
    return COLOURS[1 - COLOURS.index(colour)]


def reconcile(target: Target, state: State) -> None:
    """Undo what a deploy that never finished left: its pending colour goes, the live one serves."""
    if state.pending is not None:
        log.warning("%s: stopping %s (%s), left by a deploy that did not finish",
                    target.env.name, state.pending.colour, state.pending.bento)  # fmt: skip
        if state.live is not None and alive(state.live.pid):
            target.route_to(state.live.colour)
        stop(state.pending.pid)
        state.pending = None
        save_state(target.root, state)
    elif state.live is not None and alive(state.live.pid) and target.router().pid() is None:
        target.route_to(state.live.colour)


def check_gate(target: Target, tag: str) -> None:
    """Production takes only a Bento that passed the environment it requires."""
    required = target.env.requires
    if required is None:
        return
    passed = load_state(target.root, required).passed()
    if tag not in passed:
        raise DeployError(
            f"{target.env.name} takes only a Bento that passed {required}: {tag} did not "
            f"(passed {required}: {', '.join(passed[-5:]) or 'none'})"
        )


def _back(target: Target, state: State, new: Serving) -> float:
    """All traffic to the live colour (or none, before the first deploy), the new one stopped;
    returns the seconds until the old colour had it all."""
    began = time.monotonic()
    with uninterrupted():
        if state.live is not None:
            target.route_to(state.live.colour)
        elif target.router().pid() is not None:
            target.router().stop()
        back_s = time.monotonic() - began
        stop(new.pid)
        state.pending = None
    return back_s


def shift(
    target: Target, state: State, new: Serving, announce: Callable[[str], None]
) -> tuple[str, float]:
    """Traffic to ``new`` in steps, each watched, then the window; returns ('' or why it failed,
    seconds from the first weight change to 100 %)."""
    env, router = target.env, target.router()
    port = env.colours[new.colour]
    old = env.colours[state.live.colour] if state.live is not None else None
    offset, began, switch_s = router.log_size(), time.monotonic(), 0.0
    steps = env.steps if old is not None else (100,)
    for percent in steps:
        weights = {port: percent}
        if old is not None:
            weights[old] = 100 - percent if percent < 100 else BACKUP  # noqa: PLR2004
        router.route(weights)
        if percent == 100:  # noqa: PLR2004
            switch_s = time.monotonic() - began
        hold = env.watch_s if percent == 100 else env.step_s  # noqa: PLR2004
        announce(f"{percent} % of traffic on {new.colour}, watching {hold:.0f} s")
        verdict = watch(router, new.pid, port, env, hold, offset, require_traffic=percent == 100)  # noqa: PLR2004
        log.info("%s at %d %%: %d requests, %d errors, p99 %.1f ms",
                 new.colour, percent, verdict.requests, verdict.errors, verdict.p99_ms)  # fmt: skip
        if not verdict.ok:
            return f"at {percent} %: {verdict.reason}", switch_s
    return "", switch_s


def verified(bento: BentoInfo) -> dict[str, str]:
    """Check the Bento's model against its signature; returns the environment that makes its
    server check the same at start.

    Raises:
        DeployError: no key to check with, or the model does not match its signature.
    """
    key, identity, env = trust()
    if key is None and identity is None:
        raise DeployError(
            f"no key to verify {bento.tag}'s signature with: set {PUBLIC_KEY_ENV} "
            f"(the public key of the pair that signed it at release)"
        )
    try:
        verify(bento.model_path, key, identity)
    except SignatureError as exc:
        raise DeployError(f"{bento.tag}: {exc}") from exc
    log.info("%s: the model matches its signature", bento.tag)
    return env


def deploy(target: Target, tag: str, action: Literal["deploy", "rollback"] = "deploy") -> Record:
    """Deploy the Bento ``tag`` to ``target``'s idle colour; the record says how it ended.

    Raises:
        DeployError: refused before anything started (the gate, no such Bento, nginx missing).
    """
    env = target.env
    state = load_state(target.root, env.name)
    reconcile(target, state)
    if action == "deploy":
        check_gate(target, tag)
    bento = bento_info(tag)
    extra_env = verified(bento)
    colour: Colour = other(state.live.colour) if state.live is not None else "blue"
    port, started = env.colours[colour], now()

    def announce(text: str) -> None:
        log.info("%s %s -> %s: %s", env.name, bento.tag, colour, text)

    def finish(outcome: Outcome, **extra: Any) -> Record:
        record = Record(environment=env.name, action=action, colour=colour, bento=bento.tag,
                        model_version=bento.model_version, started=started, finished=now(),
                        outcome=outcome, **extra)  # fmt: skip
        return _finish(target, state, record)

    with interruptible():
        try:
            announce(f"starting on port {port}")
            pid = start(bento, port, env.workers, target.log_path(colour), extra_env)
            new = Serving(
                colour=colour, bento=bento.tag, model_version=bento.model_version, pid=pid
            )
            state.pending = new
            save_state(target.root, state)
            try:
                ready_s = wait_ready(pid, port, env.ready_timeout_s, target.log_path(colour))
                announce(f"ready after {ready_s:.1f} s; smoke test")
                smoke(port, bento)
            except DeployError as exc:
                _back(target, state, new)
                return finish("failed", reason=str(exc))
            base = f"http://127.0.0.1:{env.port}"
            with Probes(base, reference_flights()[:1], env.probe_rate):
                why, switch_s = shift(target, state, new, announce)
            if why:
                back_s = _back(target, state, new)
                return finish("rolled back", reason=why, switch_s=switch_s, rollback_s=back_s)
        except Interrupted as exc:
            if state.pending is not None:
                _back(target, state, state.pending)
            return finish("interrupted", reason=f"{exc} during the deploy")
        except BaseException as exc:  # nginx refused a config, a bug: the way back, then the error
            if state.pending is not None:
                _back(target, state, state.pending)
            finish("failed", reason=f"{type(exc).__name__}: {exc}")
            raise
    with uninterrupted():
        _promote(target, state, new)
        return finish("passed", switch_s=switch_s, alias_version=move_alias(env.name, bento))


def _promote(target: Target, state: State, new: Serving) -> None:
    """The new colour alone behind nginx, the old one stopped once nginx no longer uses it."""
    target.route_to(new.colour)
    target.router().drained()
    if state.live is not None:
        stop(state.live.pid)
    state.live, state.pending = new, None


def move_alias(alias: str, bento: BentoInfo) -> str | None:
    """Give the MLflow alias ``alias`` (the environment's name) to the registered version of the
    Bento's model; the deploy stands whatever happens here (a warning says what did not)."""
    found = runs.settings(os.environ, Path.cwd())
    if not runs.enabled(os.environ):
        log.info("tracking is off (%s=0): alias %r not moved", runs.TRACKING_SWITCH, alias)
        return None
    try:
        version = registry.move_alias(found, alias, bento.dvc_md5)
    except runs.TrackingError as exc:
        log.warning("alias %r not moved: %s", alias, exc)
        return None
    if version is None:
        log.warning("alias %r not moved: no registered version of the model md5 %s in %s",
                    alias, bento.dvc_md5, found.uri)  # fmt: skip
    else:
        log.info("alias %r -> version %s of the registered model", alias, version)
    return version


def _finish(target: Target, state: State, record: Record) -> Record:
    state.history.append(record)
    save_state(target.root, state)
    why = f" ({record.reason})" if record.reason else ""
    log.info("%s: %s %s on %s: %s%s", record.environment, record.action, record.bento,
             record.colour, record.outcome, why)  # fmt: skip
    return record


def rollback(target: Target) -> Record:
    """Deploy again the Bento that passed before the live one (the same steps and checks).

    Raises:
        DeployError: nothing passed here before the live Bento.
    """
    state = load_state(target.root, target.env.name)
    live = state.live.bento if state.live is not None else None
    earlier = [tag for tag in state.passed() if tag != live]
    if not earlier:
        raise DeployError(f"{target.env.name}: no earlier Bento passed here to roll back to")
    return deploy(target, earlier[-1], action="rollback")
