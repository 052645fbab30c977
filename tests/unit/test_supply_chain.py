"""Supply chain and code: security lint, dependency audit, non-root container, no credentials.

``scripts/audit.py`` (pip-audit over uv.lock) and ``scripts/scan_secrets.py`` are the tools
``make audit`` runs; their cores are tested here on inputs built in code, then run for real on
this repository. The audit needs PyPI's vulnerability API (the internet, not loopback): where it
cannot be reached the test skips and says so.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run, script

BIN = Path(sys.executable).parent


audit = script("audit")
scan_secrets = script("scan_secrets")

# --- ruff's security rules (S) --------------------------------------------------------------

NOQA_S = re.compile(r"#\s*noqa:\s*(?P<codes>S\d+(?:\s*,\s*[A-Z]+\d+)*)(?P<why>.*)$")
#: exceptions in files other teams own, justified here until the reason is written inline there
JUSTIFIED_ELSEWHERE = {
    ("src/flightdelay/core/dvc.py", "S603"): "dvc argv lists built in core/dvc.py, no shell",
    (
        "src/flightdelay/ops/release.py",
        "S607",
    ): "`docker info` from PATH, after shutil.which found it",
    ("tests/integration/s3.py", "S310"): "the same loopback request to the test's moto server",
}
#: S rules ignored for all of tests/ in pyproject.toml: asserts are how pytest checks; tests run
#: fixed commands (git, dvc, bentoml) from PATH with argument lists, never through a shell
TEST_IGNORES = {"S101", "S603", "S607"}


def test_ruff_security_rules_pass() -> None:
    done = subprocess.run(
        [str(BIN / "ruff"), "check", "--select", "S", "--output-format", "concise", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _security_exceptions() -> list[tuple[str, int, str, str]]:
    found = []
    for path in scan_secrets.repository_files(ROOT):
        if path.suffix != ".py":
            continue
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            match = NOQA_S.search(line)
            if match:  # the reason: after the codes, or a comment on the line above
                above = lines[number - 2].partition("#")[2] if number > 1 else ""
                why = match["why"].strip(" -:") or above.strip()
                found.append((str(path.relative_to(ROOT)), number, match["codes"], why))
    return found


def test_every_security_exception_is_justified() -> None:
    exceptions = _security_exceptions()
    unjustified = [
        f"{rel}:{number}: noqa: {codes}"
        for rel, number, codes, why in exceptions
        if len(why) < 10  # noqa: PLR2004 - a reason, not a stray word
        and not all((rel, code.strip()) in JUSTIFIED_ELSEWHERE for code in codes.split(","))
    ]
    assert len(exceptions) > 5  # the scan sees the code base
    assert not unjustified, "say why inline (`# noqa: S603 - why`):\n" + "\n".join(unjustified)


def test_security_rules_ignored_for_tests_only_where_explained() -> None:
    config = (ROOT / "pyproject.toml").read_text()
    ignores = re.search(r'"tests/\*\*" = \[(.*?)\]', config)
    assert ignores, "no per-file ignores for tests/ in pyproject.toml"
    security = {c.strip(' "') for c in ignores.group(1).split(",") if c.strip(' "').startswith("S")}
    assert security <= TEST_IGNORES
    assert "[tool.ruff.lint.per-file-ignores]" in config
    assert '"src/' not in config.split("[tool.ruff.lint.per-file-ignores]")[1].split("\n[")[0]


# --- pip-audit over the lock ----------------------------------------------------------------


def _dep(name: str, vulns: list[str] | None = None, skip: str | None = None) -> dict[str, object]:
    if skip is not None:
        return {"name": name, "skip_reason": skip}
    return {"name": name, "version": "1.0", "vulns": [{"id": v} for v in vulns or []]}


@pytest.mark.parametrize(
    "deps, status, code, strict_code",
    [
        ([_dep("a"), _dep("b")], "clean", 0, 0),
        ([_dep("a"), _dep("b", ["PYSEC-1", "GHSA-x"])], "vulnerable", 1, 1),
        ([_dep("a"), _dep("b", skip="Dependency not found on PyPI")], "partial", 0, 3),
        ([_dep("a", skip="not found"), _dep("b", skip="not found")], "unreachable", 0, 3),
        ([_dep("a", skip="not found"), _dep("b", ["PYSEC-2"])], "vulnerable", 1, 1),
    ],
    ids=["clean", "vulnerable", "partial", "nothing-audited", "vulnerable-and-skipped"],
)
def test_audit_summary_never_calls_skipped_packages_clean(
    deps: list[dict[str, object]], status: str, code: int, strict_code: int
) -> None:
    summary = audit.summarise({"dependencies": deps})
    assert summary.status == status
    assert audit.exit_status(summary, strict=False) == code
    assert audit.exit_status(summary, strict=True) == strict_code
    if status == "vulnerable":
        assert summary.vulnerable["b==1.0"][0].startswith("PYSEC")


def test_audit_summary_rejects_a_report_without_dependencies() -> None:
    with pytest.raises(ValueError, match="pip-audit report: no 'dependencies' list"):
        audit.summarise({"fixes": []})


def test_locked_dependencies_have_no_known_vulnerabilities(tmp_path: Path) -> None:
    """pip-audit over every package of uv.lock (exported, not resolved); skips when PyPI's
    vulnerability API cannot be reached (an offline machine cannot audit)."""
    out = tmp_path / "audit.json"
    done = run([sys.executable, str(ROOT / "scripts/audit.py"), "--out", str(out)], ROOT, False)
    summary = json.loads(out.read_text()) if out.exists() else None
    assert summary is not None, done.stdout + done.stderr
    if summary["status"] == "unreachable":
        pytest.skip(f"vulnerability service unreachable: {summary['skipped']['*']}")
    assert summary["vulnerable"] == {}, done.stderr
    assert summary["audited"] > 100
    assert done.returncode == 0, done.stderr


# --- the container user ---------------------------------------------------------------------


def test_container_runs_as_a_non_root_user() -> None:
    """deploy/Containerfile (the one `make container` builds): its last USER, the one
    ENTRYPOINT runs as, is not root."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    lines = [line.split() for line in text.splitlines() if line.startswith(("USER", "ENTRYPOINT"))]
    users = [words[1] for words in lines if words[0] == "USER"]
    assert lines[-1][0] == "ENTRYPOINT"
    assert users, "no USER in the Containerfile"
    assert users[-1] not in {"root", "0", "0:0"}, users
    assert users[-1] == "bentoml"


# --- credentials ----------------------------------------------------------------------------

# assembled at run time so that this file itself holds no credential-shaped string
PLANTED = {
    "aws.env": "AWS_ACCESS_KEY_ID=" + "AKIA" + "Q3EXAMPLE7KEY2ID",
    "id_rsa": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE...\n",
    "ci.yml": "token: " + "ghp_" + "a1B2" * 9,
    "settings.ini": "[db]\ndb_password = " + "hunter2-is-" + "not-secret",
    "boto.cfg": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY",
}
PLACEHOLDERS = """export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...
password: ${{ secrets.GITHUB_TOKEN }}
token = os.environ["FLIGHTDELAY_TOKEN"]
{"AWS_ACCESS_KEY_ID": "AKIAWRONG", "AWS_SECRET_ACCESS_KEY": "wrong"}
"""


def test_scanner_finds_planted_credentials_and_ignores_placeholders(tmp_path: Path) -> None:
    for name, text in PLANTED.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "README.md").write_text(PLACEHOLDERS)
    found: dict[str, set[str]] = {}
    for finding in scan_secrets.scan_paths([tmp_path]):
        found.setdefault(finding.path.name, set()).add(finding.kind)
    assert found == {
        "aws.env": {"AWS access key id"},
        "id_rsa": {"private key"},
        "ci.yml": {"GitHub token", "password"},
        "settings.ini": {"password"},
        "boto.cfg": {"AWS secret access key"},
    }


def test_repository_and_bento_build_inputs_hold_no_credentials() -> None:
    """Every file Git would commit, which includes all the Bento's build inputs (bentofile.yaml,
    the `include` globs under src/, uv.lock its packages are pinned from)."""
    files = scan_secrets.repository_files(ROOT)
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    inputs = [p for g in bentofile["include"] for p in (ROOT / "src").glob(g)]
    assert inputs and set(inputs) <= set(files)
    findings = scan_secrets.scan_paths(files)
    assert not findings, "\n".join(map(str, findings))
