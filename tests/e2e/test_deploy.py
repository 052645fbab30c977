"""Blue-green deploys for real: nginx in front of two `bentoml serve` colours, on loopback.

Bentos are built by ``flightdelay.ops.release`` from the sampled pipeline run, one per commit of
a release repository (so each has its own model version). Two are broken on purpose after the
build, as a bad release would be: one whose compiled model answers other probabilities than its
Pipeline, one whose compiled model is missing (its server never becomes ready). A load of at
least 100 requests/s runs through the proxy during each deploy; every answer is kept. The two
are signed again after the change (a release that went wrong, not an attack); a third is changed
after signing and must be refused before it runs.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from bento_helpers import release, release_env, release_repo, tags
from deploy_helpers import Load, colour_port, command, environments, port_of, run

from benchmarks import loopback
from benchmarks.loopback import ServeError
from conftest import run as run_cmd
from flightdelay.contract.schema import Flight
from flightdelay.ops.deploy.state import State
from flightdelay.serving.signature import PUBLIC_KEY_ENV, sign

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)
FLIGHT = Flight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
MIN_RATE = 100  # requests/s the load must keep up during a deploy


@dataclass(frozen=True)
class Setup:
    home: Path
    envs: Path
    state: Path
    good: list[str]  # Bento tags, each its own model version
    wrong: str  # its compiled model gives other probabilities than its Pipeline
    broken: str  # its compiled model is gone: the server never becomes ready
    tampered: str  # its Pipeline changed after signing

    def url(self, env: str = "staging") -> str:
        return f"http://127.0.0.1:{port_of(self.envs, env)}"

    def read(self, env: str = "staging") -> State:
        return State.model_validate_json((self.state / env / "state.json").read_text())

    def version_of(self, tag: str) -> str:
        return str(self.model_tag(tag).split(":")[1])

    def model_tag(self, tag: str) -> str:
        name, version = tag.split(":")
        bento = yaml.safe_load((self.home / "bentos" / name / version / "bento.yaml").read_text())
        return str(bento["models"][0]["tag"])

    def model_dir(self, tag: str) -> Path:
        name, version = self.model_tag(tag).split(":")
        return self.home / "models" / name / version


def _build(repo: Path, home: Path) -> str:
    run_cmd(["git", "commit", "-q", "--allow-empty", "-m", "another release"], repo)
    release(repo, home, "bento")
    return str(tags(repo, home)["bento"])


@pytest.fixture(scope="module")
def setup(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    repo = release_repo(tmp_path_factory.mktemp("release"), small_repo)
    home = tmp_path_factory.mktemp("bentoml")
    built = [_build(repo, home) for _ in range(6)]
    folder = tmp_path_factory.mktemp("deploy")
    found = Setup(home, environments(folder / "config", ready_timeout_s=20), folder / "state",
                  built[:3], *built[3:])  # fmt: skip
    serving = found.model_dir(found.wrong) / "serving.json"
    manifest = json.loads(serving.read_text())
    key = "constant" if "constant" in manifest["scorer_state"] else "intercept"
    manifest["scorer_state"][key] += 0.5
    serving.write_text(json.dumps(manifest))
    (found.model_dir(found.broken) / "serving.json").unlink()
    for tag in (found.wrong, found.broken):
        sign(found.model_dir(tag), home / "signing" / "private.pem")
    with (found.model_dir(found.tampered) / "model.joblib").open("ab") as pipeline:
        pipeline.write(b"\0")
    yield found
    for env in ("staging", "production"):
        run(["deploy", "stop", "--env", env], found.envs, found.state, home)


def _deploy(setup: Setup, tag: str, env: str = "staging") -> subprocess.CompletedProcess[str]:
    return run(["deploy", "--env", env, tag], setup.envs, setup.state, setup.home)


def _serving_pids(setup: Setup) -> set[int]:
    """The `bentoml serve` processes of this test's BentoML home."""
    found = set()
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline, environ = proc.info["cmdline"] or [], proc.info["environ"] or {}
        except psutil.Error:
            continue
        if "serve" in cmdline and environ.get("BENTOML_HOME") == str(setup.home):
            found.add(proc.pid)
    return found


def _live(setup: Setup, tag: str) -> None:
    """Make ``tag`` the live Bento of staging (deploying it unless it already is)."""
    state = setup.read() if (setup.state / "staging" / "state.json").exists() else None
    if state is None or state.live is None or state.live.bento != tag:
        done = _deploy(setup, tag)
        assert done.returncode == 0, done.stderr[-3000:]


def _answers_name(setup: Setup, version: str, n: int = 30) -> None:
    for _ in range(n):
        answer = httpx.post(f"{setup.url()}/predict", json=[FLIGHT], timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["model_version"] == version


def test_a_deploy_under_load_loses_no_request_and_switches_the_version(setup: Setup) -> None:
    first, second = setup.good[0], setup.good[1]
    _live(setup, first)
    with Load(setup.url(), FLIGHT) as load:
        time.sleep(1)
        done = _deploy(setup, second)
        switched = time.monotonic()
        time.sleep(1)
    assert done.returncode == 0, done.stderr[-3000:]
    record = setup.read().history[-1]
    log.warning("deploy under load: %d requests at %.0f/s, %d failed; switch %.2f s",
                len(load.answers), load.per_second(), len(load.failed()),
                record.switch_s)  # fmt: skip
    assert load.per_second() >= MIN_RATE
    assert load.failed() == []
    assert load.versions() == {setup.version_of(first), setup.version_of(second)}
    assert load.versions(since=switched) == {setup.version_of(second)}
    assert (record.outcome, record.bento, record.colour) == ("passed", second, "green")
    _answers_name(setup, setup.version_of(second))
    assert len(_serving_pids(setup)) == 1  # the old colour is gone once the new one proved itself


@pytest.mark.parametrize(("which", "reason"), [
    ("wrong", r"smoke test: flight 0 got probability .* expected"),
    ("broken", r"(exited before it was ready|not ready after)"),
])  # fmt: skip
def test_a_bento_that_fails_its_checks_never_takes_traffic(
    setup: Setup, which: str, reason: str
) -> None:
    live = setup.good[1]
    _live(setup, live)
    bad = getattr(setup, which)
    idle_port = colour_port(setup.envs, "staging", "blue")  # green is live
    access = setup.state / "staging" / "nginx" / "access.log"
    offset = access.stat().st_size
    with Load(setup.url(), FLIGHT) as load:
        done = _deploy(setup, bad)
    assert done.returncode == 1
    record = setup.read().history[-1]
    assert (record.outcome, record.bento) == ("failed", bad)
    assert re.search(reason, record.reason), record.reason
    assert re.search(reason, done.stderr), done.stderr[-2000:]
    log.warning("%s bento: %d requests, %d failed", which, len(load.answers), len(load.failed()))
    assert load.failed() == []
    assert load.versions() == {setup.version_of(live)}
    proxied = access.read_bytes()[offset:].decode()
    assert proxied.count("|200|") >= len(load.answers)  # the log has the load's answers
    assert f"127.0.0.1:{idle_port}" not in proxied  # not one request went to it through nginx
    assert setup.read().live.bento == live  # type: ignore[union-attr]
    assert setup.read().pending is None


def _start(setup: Setup, tag: str, envs: Path) -> subprocess.Popen[str]:
    """``flightdelay deploy`` to staging as a process of its own, to signal or kill."""
    cmd = command(["deploy", "--env", "staging", tag], envs, setup.state)
    return subprocess.Popen(cmd, env=release_env(setup.home), stderr=subprocess.PIPE, text=True)  # noqa: S603 - our command


def _wait_for(what: str, check: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _nginx_conf(setup: Setup) -> str:
    path = setup.state / "staging" / "nginx" / "nginx.conf"
    return path.read_text() if path.exists() else ""


def _pending(setup: Setup) -> bool:
    return setup.read().pending is not None


def _kill_tree(pid: int) -> None:
    server = psutil.Process(pid)
    for proc in [server, *server.children(recursive=True)]:
        proc.kill()


def test_a_failure_after_the_switch_is_rolled_back_within_the_window(setup: Setup) -> None:
    live, new = setup.good[1], setup.good[2]
    _live(setup, live)
    envs = environments(setup.envs.parent.parent / "long-window", watch_s=20)
    envs.write_text(setup.envs.read_text().replace("watch_s: 5", "watch_s: 20"))
    with Load(setup.url(), FLIGHT) as load:
        deploy = _start(setup, new, envs)
        _wait_for("100 % on the new colour", lambda: " backup " in _nginx_conf(setup))
        killed = time.monotonic()
        pending = setup.read().pending
        assert pending is not None
        _kill_tree(pending.pid)
        _, err = deploy.communicate(timeout=120)
        done = time.monotonic()
    record = setup.read().history[-1]
    lost = [a for a in load.failed() if a[0] >= killed]
    log.warning("kill after the switch: rolled back %.1f s after the kill (%.2f s to route "
                "back); %d of %d requests failed", done - killed, record.rollback_s or -1,
                len(lost), len(load.answers))  # fmt: skip
    assert deploy.returncode == 1, err[-2000:]
    assert (record.outcome, record.bento) == ("rolled back", new)
    assert "at 100 %" in record.reason
    assert done - killed < 20  # within the window
    assert len(load.failed()) <= 2 * MIN_RATE  # a bounded few seconds at most
    assert setup.read().live.bento == live  # type: ignore[union-attr]
    _answers_name(setup, setup.version_of(live))


@pytest.mark.parametrize(("step", "reached"), [
    ("starting", _pending),
    ("10 %", lambda s: "weight=10 " in _nginx_conf(s)),
    ("100 %", lambda s: " backup " in _nginx_conf(s)),
])  # fmt: skip
def test_an_interrupted_deploy_leaves_the_previous_version_serving(
    setup: Setup, step: str, reached: object
) -> None:
    live, new = setup.good[1], setup.good[0]
    _live(setup, live)
    before = _serving_pids(setup)
    with Load(setup.url(), FLIGHT) as load:
        deploy = _start(setup, new, setup.envs)
        _wait_for(step, lambda: reached(setup))  # type: ignore[operator]
        deploy.send_signal(signal.SIGINT)
        _, err = deploy.communicate(timeout=60)
    record = setup.read().history[-1]
    log.warning("SIGINT at %s: %d requests, %d failed", step, len(load.answers), len(load.failed()))
    assert deploy.returncode == 1, err[-2000:]
    assert (record.outcome, record.reason) == ("interrupted", "SIGINT during the deploy")
    assert "interrupted: SIGINT during the deploy" in err
    assert load.failed() == []
    state = setup.read()
    assert state.live.bento == live  # type: ignore[union-attr]
    assert state.pending is None
    assert _serving_pids(setup) == before
    _answers_name(setup, setup.version_of(live))


def test_a_deploy_killed_outright_is_undone_by_the_next_one(setup: Setup) -> None:
    live, new = setup.good[1], setup.good[0]
    _live(setup, live)
    deploy = _start(setup, new, setup.envs)
    _wait_for("50 %", lambda: "weight=50 " in _nginx_conf(setup))
    deploy.kill()
    deploy.wait()
    left = setup.read().pending
    assert left is not None and left.bento == new  # the state says what was going on
    done = run(["rollback", "--env", "staging"], setup.envs, setup.state, setup.home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopping green" in done.stderr or "stopping blue" in done.stderr
    state = setup.read()
    assert (state.history[-1].action, state.history[-1].outcome) == ("rollback", "passed")
    assert state.live.bento == new  # type: ignore[union-attr]  # it passed before good[1]
    assert (
        not psutil.pid_exists(left.pid) or psutil.Process(left.pid).status() == psutil.STATUS_ZOMBIE
    )
    _answers_name(setup, setup.version_of(new))


def test_production_takes_only_what_passed_staging(setup: Setup) -> None:
    passed = setup.read().passed()
    never = setup.wrong  # staging failed it
    done = run(["deploy", "--env", "production", never], setup.envs, setup.state, setup.home)
    assert done.returncode == 1
    assert f"production takes only a Bento that passed staging: {never} did not" in done.stderr
    assert (
        not (setup.state / "production" / "state.json").exists()
        or setup.read("production").live is None
    )
    ok = _deploy(setup, passed[-1], env="production")
    assert ok.returncode == 0, ok.stderr[-3000:]
    meta = httpx.get(f"{setup.url('production')}/metadata", timeout=10).json()
    assert meta["model_version"] == setup.version_of(passed[-1])
    status = run(["deploy", "status", "--json"], setup.envs, setup.state, setup.home)
    report = json.loads(status.stdout)
    assert report["production"]["live"]["bento"] == passed[-1]
    assert report["production"]["live"]["up"] is True
    assert report["staging"]["last"]["outcome"] == "passed"


def test_a_tampered_model_is_refused_at_deploy_and_at_service_start(
    setup: Setup, tmp_path: Path
) -> None:
    before = _serving_pids(setup)
    done = _deploy(setup, setup.tampered)
    assert done.returncode == 1
    assert f"{setup.tampered}: " in done.stderr
    assert "the model does not match its signature" in done.stderr
    assert _serving_pids(setup) == before  # nothing started
    public = setup.home / "signing" / "public.pem"
    env = {**release_env(setup.home), PUBLIC_KEY_ENV: str(public), "FLIGHTDELAY_WORKERS": "1",
           "FLIGHTDELAY_MODEL_TAG": setup.model_tag(setup.tampered)}  # fmt: skip
    with (  # the service, started by hand, refuses it too
        pytest.raises(ServeError, match="does not match its signature"),
        loopback.serving(setup.tampered, env, tmp_path / "serve.log", setup.home, timeout_s=20),
    ):
        pass
