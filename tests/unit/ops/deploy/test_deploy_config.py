"""deploy/environments.yaml: the repository's file is valid, and bad files fail naming the fault."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flightdelay.ops.deploy.config import DeployError, environment, load_environments

ROOT = Path(__file__).resolve().parents[4]
GOOD = {"port": 9000, "colours": {"blue": 9001, "green": 9002}}


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "environments.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_the_repository_environments() -> None:
    found = load_environments(ROOT / "deploy" / "environments.yaml")
    assert set(found) == {"staging", "production"}
    assert found["production"].requires == "staging"
    assert found["staging"].requires is None
    ports = [p for env in found.values() for p in (env.port, *env.colours.values())]
    assert len(ports) == len(set(ports))  # the two environments can run side by side
    assert found["staging"].steps[-1] == 100  # noqa: PLR2004


def test_defaults_apply_under_each_environment(tmp_path: Path) -> None:
    path = write(tmp_path, {"a": GOOD, "b": {**GOOD, "port": 9100, "watch_s": 3},
                            "defaults": {"watch_s": 7}})  # fmt: skip
    found = load_environments(path)
    assert (found["a"].watch_s, found["b"].watch_s) == (7, 3)


@pytest.mark.parametrize(("section", "message"), [
    ({**GOOD, "colours": {"blue": 9001}}, "colours must be exactly"),
    ({**GOOD, "colours": {"blue": 9000, "green": 9002}}, "distinct ports"),
    ({**GOOD, "steps": [50, 10, 100]}, "steps must rise and end at 100"),
    ({**GOOD, "steps": [10, 50]}, "steps must rise and end at 100"),
    ({**GOOD, "max_error_rate": 1.5}, "max_error_rate"),
    ({**GOOD, "wach_s": 3}, "wach_s"),
    ({**GOOD, "requires": "nowhere"}, "requires 'nowhere', not defined here"),
])  # fmt: skip
def test_a_bad_environment_is_named(
    tmp_path: Path, section: dict[str, object], message: str
) -> None:
    with pytest.raises(DeployError, match=rf"environment 'x'|{message}") as raised:
        load_environments(write(tmp_path, {"x": section}))
    assert message in str(raised.value)


def test_an_unknown_environment_names_the_ones_there_are(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match=r"no environment 'prod' \(there are: staging\)"):
        environment(write(tmp_path, {"staging": GOOD}), "prod")


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="cannot read the environments"):
        load_environments(tmp_path / "nope.yaml")
