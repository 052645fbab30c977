"""The state file: written atomically, read back, a damaged one named; the production gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from flightdelay.ops.deploy.config import DeployError, Environment
from flightdelay.ops.deploy.rollout import Target, check_gate, rollback
from flightdelay.ops.deploy.state import Record, Serving, State, load_state, save_state

ENVS = {
    name: Environment(name=name, port=port, colours={"blue": port + 1, "green": port + 2},
                      requires="staging" if name == "production" else None)
    for name, port in (("staging", 9000), ("production", 9100))
}  # fmt: skip


def record(bento: str, outcome: str, env: str = "staging") -> Record:
    return Record(environment=env, action="deploy", colour="blue", bento=bento, model_version="v",
                  started="t0", finished="t1", outcome=outcome)  # type: ignore[arg-type]  # fmt: skip


def test_state_round_trip_and_no_partial_file(tmp_path: Path) -> None:
    state = State(environment="staging", live=Serving(colour="green", bento="b:1",
                  model_version="v", pid=12), history=[record("b:1", "passed")])  # fmt: skip
    save_state(tmp_path, state)
    assert load_state(tmp_path, "staging") == state
    assert [p.name for p in (tmp_path / "staging").iterdir()] == ["state.json"]
    assert load_state(tmp_path, "production") == State(environment="production")


def test_a_damaged_state_file_is_named_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "staging" / "state.json"
    path.parent.mkdir()
    path.write_text('{"environment": "staging", "live": 3}')
    with pytest.raises(DeployError, match=r"state\.json: not a deploy state file"):
        load_state(tmp_path, "staging")
    assert path.read_text() == '{"environment": "staging", "live": 3}'


def test_production_refuses_what_staging_did_not_pass(tmp_path: Path) -> None:
    history = [record("b:1", "passed"), record("b:2", "failed"), record("b:3", "rolled back")]
    save_state(tmp_path, State(environment="staging", history=history))
    target = Target(ENVS["production"], tmp_path, Path("nginx.conf"))
    check_gate(target, "b:1")
    for tag in ("b:2", "b:3", "b:4"):
        with pytest.raises(
            DeployError, match=rf"passed staging: {tag} did not \(passed staging: b:1\)"
        ):
            check_gate(target, tag)
    check_gate(Target(ENVS["staging"], tmp_path, Path("nginx.conf")), "b:4")  # no gate


def test_rollback_needs_an_earlier_passed_bento(tmp_path: Path) -> None:
    live = Serving(colour="blue", bento="b:1", model_version="v", pid=1)
    history = [record("b:1", "passed"), record("b:2", "failed")]
    save_state(tmp_path, State(environment="staging", live=live, history=history))
    with pytest.raises(DeployError, match="staging: no earlier Bento passed here"):
        rollback(Target(ENVS["staging"], tmp_path, Path("nginx.conf")))
