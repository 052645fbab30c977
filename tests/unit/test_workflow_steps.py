"""The workflows' shell steps, run as GitHub runs them (``bash -e``), against stubs of the tools
they call (uv, jq, docker, gh) that record their arguments, in throwaway Git repositories.

What matters is what a real run does: which image tags reach the registry, that a failing command
fails the step instead of pushing nothing and staying green, that a dirty tree or a stale lock is
refused, that a failure opens one issue.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import CHILD_ENV, ROOT, unavailable

WORKFLOWS = ROOT / ".github" / "workflows"
MAKEFILE = ROOT / "Makefile"
#: the local tags `flightdelay bento tags` lists for a clean build and for a dirty one
TAGS = ["flight-delay:0.1.0", "flight-delay:sha-abc1234"]
DIRTY = ["flight-delay:0.1.0-dirty", "flight-delay:sha-abc1234-dirty"]
#: a recording stub: logs its arguments, prints $STUB_<NAME>_OUT, exits $STUB_<NAME>_STATUS
STUB = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0]).upper()
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
sys.stdout.write(os.environ.get(f"STUB_{{name}}_OUT", ""))
sys.exit(int(os.environ.get(f"STUB_{{name}}_STATUS", "0")))
"""
#: jq as the push step uses it: `jq -r '.images[]'`, anything else is a test failure
JQ = """#!{python}
import json, sys
assert sys.argv[1:] == ["-r", ".images[]"], sys.argv
sys.stdout.write("".join(f"{{tag}}\\n" for tag in json.load(sys.stdin)["images"]))
"""
#: uv for `uv run --locked python -c CODE`: this interpreter runs CODE
UV_PYTHON = """#!{python}
import os, sys
assert sys.argv[1:4] == ["run", "--locked", "python"], sys.argv
os.execv(sys.executable, [sys.executable, *sys.argv[4:]])
"""


def _step(workflow: str, contains: str) -> str:
    """The run: text of the one step of ``workflow`` whose script contains ``contains``."""
    data: dict[str, Any] = yaml.safe_load((WORKFLOWS / workflow).read_text())
    runs = [
        step["run"]
        for job in data["jobs"].values()
        for step in job.get("steps", [])
        if contains in step.get("run", "")
    ]
    assert len(runs) == 1, f"{workflow}: {len(runs)} steps run {contains!r}"
    return str(runs[0])


class Runner:
    """Runs a step's script with bash -e (GitHub's default shell) and stubs first on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "calls.log"
        self.output = root / "github_output"
        self.output.touch()

    def stub(self, name: str, body: str = STUB) -> None:
        path = self.bin / name
        path.write_text(body.format(python=sys.executable))
        path.chmod(0o755)

    def run(self, script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        file = self.root / "step.sh"
        file.write_text(script)
        full = {
            **CHILD_ENV,
            "PATH": f"{self.bin}:{CHILD_ENV['PATH']}",
            "STUB_LOG": str(self.log),
            "GITHUB_OUTPUT": str(self.output),
            **env,
        }
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", str(file)],
            cwd=cwd, env=full, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [call for call in calls if name is None or call[0] == name]

    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines())


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=CHILD_ENV, check=True, capture_output=True)


def _repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir()
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    _git(path, "init", "-q", "-b", "main")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "x")
    return path


# -- release: the image push --------------------------------------------------------------------


def _push(runner: Runner, tags: list[str] | None, release: str, uv_status: str = "0") -> Any:
    runner.stub("uv")
    runner.stub("docker")
    runner.stub("jq", JQ)
    return runner.run(
        _step("release.yml", "docker push"),
        cwd=runner.root,
        GITHUB_REPOSITORY_OWNER="Some-Owner",
        RELEASE=release,
        STUB_UV_OUT=json.dumps({"bento": "x", "images": tags or []}) + "\n",
        STUB_UV_STATUS=uv_status,
    )


def _pushed(runner: Runner) -> list[str]:
    return [call[2] for call in runner.calls("docker") if call[1] == "push"]


def test_a_main_build_pushes_only_its_sha_tag(runner: Runner) -> None:
    """<semver> from every main commit overwrote the release: only a v* tag pushes it."""
    done = _push(runner, TAGS, release="false")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _pushed(runner) == ["ghcr.io/some-owner/flight-delay:sha-abc1234"]
    assert ["docker", "tag", "flight-delay:sha-abc1234", _pushed(runner)[0]] in runner.calls()


def test_a_release_pushes_sha_semver_and_latest(runner: Runner) -> None:
    done = _push(runner, TAGS, release="true")
    assert done.returncode == 0, done.stdout + done.stderr
    image = "ghcr.io/some-owner/flight-delay"
    assert sorted(_pushed(runner)) == [f"{image}:0.1.0", f"{image}:latest", f"{image}:sha-abc1234"]


def test_a_failing_tags_command_fails_the_push_instead_of_pushing_nothing(runner: Runner) -> None:
    """`for local in $(cmd | jq ...)` looped zero times and stayed green when cmd failed."""
    done = _push(runner, TAGS, release="true", uv_status="1")
    assert done.returncode != 0
    assert _pushed(runner) == []


def test_no_tags_listed_fails_the_push(runner: Runner) -> None:
    done = _push(runner, [], release="true")
    assert done.returncode != 0
    assert "::error::" in done.stdout
    assert _pushed(runner) == []


def test_dirty_tags_are_never_pushed(runner: Runner) -> None:
    done = _push(runner, DIRTY, release="true")
    assert done.returncode != 0
    assert "::error::flight-delay:0.1.0-dirty: a build from a modified tree" in done.stdout
    assert _pushed(runner) == []


# -- release: the dirty tree and the version tag ------------------------------------------------


def test_a_build_that_changed_tracked_files_is_refused(runner: Runner, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"dvc.lock": "a\n", "README.md": "x\n"})
    script = _step("release.yml", "git status --porcelain")
    (repo / "untracked.txt").write_text("not the tree's: ignored, as -dirty ignores it\n")
    assert runner.run(script, cwd=repo).returncode == 0
    (repo / "dvc.lock").write_text("b\n")  # what a reproduction that changed the lock leaves
    done = runner.run(script, cwd=repo)
    assert done.returncode == 1
    assert "::error::the build changed tracked files" in done.stdout
    assert "dvc.lock" in done.stdout


@pytest.mark.parametrize(
    ("tags", "status", "release"),
    [([], 0, "false"), (["v0.1.0"], 0, "true"), (["v0.1.0-rc.1", "v0.1.0"], 0, "true")],
)
def test_a_commit_is_a_release_when_v_semver_points_at_it(
    runner: Runner, tmp_path: Path, tags: list[str], status: int, release: str
) -> None:
    repo = _repo(tmp_path / "repo", {"pyproject.toml": '[project]\nversion = "0.1.0"\n'})
    for tag in tags:
        _git(repo, "tag", tag)
    runner.stub("uv", UV_PYTHON)
    done = runner.run(_step("release.yml", 'version="$(uv run'), cwd=repo)
    assert done.returncode == status, done.stdout + done.stderr
    assert runner.outputs() == {"release": release}


def test_a_v_tag_that_is_not_the_version_fails(runner: Runner, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"pyproject.toml": '[project]\nversion = "0.1.0"\n'})
    _git(repo, "tag", "v0.2.0")
    runner.stub("uv", UV_PYTHON)
    done = runner.run(_step("release.yml", 'version="$(uv run'), cwd=repo)
    assert done.returncode == 1
    assert "::error::tag v0.2.0 is not v0.1.0" in done.stdout


# -- make lock-current (ci.yml, retrain.yml) ----------------------------------------------------


@pytest.fixture
def locked(tmp_path: Path) -> Path:
    """A repository holding this project's dvc.lock and metrics, committed."""
    names = ["dvc.lock", "metrics/train.json", "metrics/evaluate.json", "metrics/benchmark.json"]
    return _repo(tmp_path / "repo", {rel: (ROOT / rel).read_text() for rel in names})


def _lock_current(repo: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        unavailable("make is not installed: apt-get install -y make")
    return subprocess.run(
        ["make", "-s", "-f", str(MAKEFILE), "lock-current"],
        cwd=repo, env=CHILD_ENV, capture_output=True, text=True, check=False,
    )  # fmt: skip


def _edit(path: Path, pattern: str, new: str) -> None:
    text = path.read_text()
    edited = re.sub(pattern, new, text, count=1, flags=re.M)
    assert edited != text, pattern
    path.write_text(edited)


def test_a_lock_that_repro_left_as_committed_is_current(locked: Path) -> None:
    done = _lock_current(locked)
    assert done.returncode == 0, done.stdout + done.stderr


def test_new_benchmark_timings_alone_leave_the_lock_current(locked: Path) -> None:
    """metrics/benchmark.json changes on every run, and with it its md5 in dvc.lock."""
    (locked / "metrics" / "benchmark.json").write_text('{"single_row_ms_p50": 9.9}\n')
    benchmark = r"(- path: metrics/benchmark\.json\n\s+hash: md5\n\s+md5: )\w+(\n\s+size: )\d+"
    _edit(locked / "dvc.lock", benchmark, r"\g<1>" + "f" * 32 + r"\g<2>27")
    done = _lock_current(locked)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_release_puts_the_committed_timings_back(runner: Runner, locked: Path) -> None:
    """release.yml: once lock-current passed, the rerun benchmark's timings alone kept the tree
    from being the commit's (every tag `-dirty`, so nothing pushed)."""
    (locked / "metrics" / "benchmark.json").write_text('{"single_row_ms_p50": 9.9}\n')
    benchmark = r"(- path: metrics/benchmark\.json\n\s+hash: md5\n\s+md5: )\w+"
    _edit(locked / "dvc.lock", benchmark, r"\g<1>" + "f" * 32)
    _git(locked, "add", "dvc.lock")  # as DVC's autostage leaves it
    assert _lock_current(locked).returncode == 0
    done = runner.run(_step("release.yml", "git restore"), cwd=locked)
    assert done.returncode == 0, done.stdout + done.stderr
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=locked, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert status.stdout == ""


@pytest.mark.parametrize(
    ("path", "pattern", "new"),
    [
        ("dvc.lock", r"(- path: models/model\.joblib\n.*\n\s+md5: )\w+", "\\g<1>" + "a" * 32),
        ("dvc.lock", r"(- path: src/flightdelay/pipeline/train\.py\n.*\n\s+md5: )\w+",
         "\\g<1>" + "b" * 32),
        ("metrics/evaluate.json", r'"test\.roc_auc": [\d.]+', '"test.roc_auc": 0.5'),
        ("metrics/train.json", r'"winner": "\w+"', '"winner": "other"'),
    ],
    ids=["a-new-model", "a-stale-dependency", "evaluate-metrics", "train-metrics"],
)  # fmt: skip
def test_a_lock_or_metrics_repro_changed_is_refused_with_the_fix(
    locked: Path, path: str, pattern: str, new: str
) -> None:
    _edit(locked / path, pattern, new)
    _git(locked, "add", path)  # DVC autostages dvc.lock: the index is no reference
    done = _lock_current(locked)
    assert done.returncode == 2  # make: a recipe failed
    assert "::error::" in done.stdout
    assert "run dvc repro and commit dvc.lock" in done.stdout


# -- retrain: is there anything to open a pull request for? --------------------------------------


def test_retrain_opens_nothing_when_only_timings_changed(runner: Runner, locked: Path) -> None:
    script = _step("retrain.yml", "make lock-current")
    shutil.copy2(MAKEFILE, locked / "Makefile")  # the step runs the checkout's own Makefile
    _git(locked, "add", "Makefile")
    _git(locked, "commit", "-qm", "Makefile")
    (locked / "metrics" / "benchmark.json").write_text("{}\n")
    done = runner.run(script, cwd=locked)
    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.outputs() == {"changed": "false"}
    assert "::notice::" in done.stdout
    _edit(locked / "metrics" / "train.json", r'"winner": "\w+"', '"winner": "other"')
    runner.output.write_text("")
    done = runner.run(script, cwd=locked)
    assert done.returncode == 0
    assert runner.outputs() == {"changed": "true"}
    assert "::error::" not in done.stdout  # a retrain that changed something is no error


# -- ci-failure: one issue ----------------------------------------------------------------------


@pytest.mark.parametrize("open_issue", ["", "7"])
def test_a_failure_opens_the_ci_failure_issue_or_comments_on_the_open_one(
    runner: Runner, open_issue: str
) -> None:
    runner.stub("gh")
    text = "release failed (workflow_run on main): https://github.com/o/r/actions/runs/1"
    done = runner.run(
        _step("ci-failure.yml", "gh issue list"),
        cwd=runner.root,
        GITHUB_REPOSITORY="o/r",
        NOTIFY_TEXT=text,
        STUB_GH_OUT=open_issue,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = [call[1:] for call in runner.calls("gh")]
    assert calls[0][:3] == ["label", "create", "ci-failure"]
    assert calls[1][:2] == ["issue", "list"]
    assert calls[1][calls[1].index("--label") + 1] == "ci-failure"
    assert calls[1][calls[1].index("--state") + 1] == "open"
    if open_issue:
        assert calls[2] == ["issue", "comment", "7", "--repo", "o/r", "--body", text]
    else:
        assert calls[2][:2] == ["issue", "create"]
        assert calls[2][calls[2].index("--label") + 1] == "ci-failure"
        assert calls[2][calls[2].index("--body") + 1] == text
    assert len(calls) == 3  # label, list, then one create or comment


# -- pr-report-post: which pull request ---------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "head", "status", "outputs"),
    [
        ("12\n", "c0ffee", 0, {"number": "12"}),
        ("12\n", "newer", 0, {}),  # a push since: that run posts its own report
        ("12; curl evil\n", "c0ffee", 1, {}),
        ("\n", "c0ffee", 1, {}),
    ],
    ids=["the-reports-pr", "a-newer-head", "not-a-number", "empty"],
)
def test_the_posted_pr_is_the_one_github_says_has_the_reports_commit(
    runner: Runner, number: str, head: str, status: int, outputs: dict[str, str]
) -> None:
    (runner.root / "pr-report").mkdir()
    (runner.root / "pr-report" / "pr-number").write_text(number)
    runner.stub("gh")
    done = runner.run(
        _step("pr-report-post.yml", "pr-report/pr-number"),
        cwd=runner.root,
        GITHUB_REPOSITORY="o/r",
        HEAD_SHA="c0ffee",
        STUB_GH_OUT=head,
    )
    assert done.returncode == status, done.stdout + done.stderr
    assert runner.outputs() == outputs
    if status:
        assert "::error::" in done.stdout
        assert runner.calls("gh") == []  # nothing asked about a number that is not one
    else:
        assert runner.calls("gh") == [["gh", "api", "repos/o/r/pulls/12", "--jq", ".head.sha"]]
