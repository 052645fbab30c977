"""Audit the locked dependencies for known vulnerabilities (pip-audit over uv.lock).

Usage (from the repository root; `make audit` runs it)::

    uv run --locked python scripts/audit.py [--service pypi|osv] [--strict] [--out audit.json]
        [--sbom BENTO/sbom.cdx.json]

With ``--sbom`` the packages audited are the components of that CycloneDX SBOM (the Bento's,
``make sbom``) instead of the lock. The lock is exported with ``uv export --frozen --no-hashes``
(every package, every group, without the project itself) and audited with
``pip-audit --no-deps --disable-pip``: the exact pinned versions, nothing resolved or installed.
Exit status: 0 clean, 1 vulnerabilities found, 3 the vulnerability service could not be reached
and nothing was audited (0 with a warning unless ``--strict``: an offline machine cannot audit,
and says so rather than passing silently).
pip-audit reports a dependency it could not look up as skipped and still says "No known
vulnerabilities found"; this script counts those and never calls a run with skips clean.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("audit")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLEAN, VULNERABLE, UNREACHABLE = 0, 1, 3
#: one request that must succeed for the service to be usable (per-version JSON / OSV query)
OSV_QUERY = {"package": {"name": "pip", "ecosystem": "PyPI"}}
PROBES = {
    "pypi": ("GET", "https://pypi.org/pypi/pip/24.0/json", None),
    "osv": ("POST", "https://api.osv.dev/v1/query", OSV_QUERY),
}


@dataclass(frozen=True)
class Summary:
    """What one audit established."""

    status: str  # clean | vulnerable | partial | unreachable
    audited: int
    skipped: dict[str, str] = field(default_factory=dict)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)


def summarise(report: dict[str, Any]) -> Summary:
    """Classify pip-audit's JSON report (``-f json``).

    Args:
        report: the parsed report, ``{"dependencies": [...]}``; each entry has ``name``,
            ``version`` and either ``vulns`` or ``skip_reason``.

    Returns:
        ``vulnerable`` if any audited package has a known vulnerability; else ``unreachable`` if
        no package could be looked up, ``partial`` if some could not, ``clean`` if all were.
    """
    deps = report.get("dependencies")
    if not isinstance(deps, list):
        raise ValueError("pip-audit report: no 'dependencies' list")
    skipped = {d["name"]: d["skip_reason"] for d in deps if "skip_reason" in d}
    vulnerable = {
        f"{d['name']}=={d['version']}": [v["id"] for v in d["vulns"]]
        for d in deps
        if d.get("vulns")
    }
    audited = len(deps) - len(skipped)
    if vulnerable:
        status = "vulnerable"
    elif audited == 0:
        status = "unreachable"
    else:
        status = "partial" if skipped else "clean"
    return Summary(status, audited, skipped, vulnerable)


def exit_status(summary: Summary, strict: bool) -> int:
    """0 clean (or not auditable, unless strict), 1 vulnerable, 3 not auditable under strict."""
    if summary.status == "vulnerable":
        return VULNERABLE
    if summary.status in {"unreachable", "partial"} and strict:
        return UNREACHABLE
    return CLEAN


def service_reachable(service: str, timeout_s: float = 10.0) -> str | None:
    """None if the vulnerability service answers, else why not (one line)."""
    method, url, body = PROBES[service]
    try:
        resp = httpx.request(method, url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None if resp.status_code == httpx.codes.OK else f"{url}: HTTP {resp.status_code}"


def locked_requirements(dest: Path) -> Path:
    """Every locked package pinned (``name==version``), exported from uv.lock."""
    cmd = ["uv", "export", "--frozen", "--no-hashes", "--no-emit-project", "--all-groups"]
    cmd += ["--format", "requirements-txt", "--output-file", str(dest)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)  # noqa: S603,S607 - fixed uv command
    return dest


def sbom_requirements(sbom: Path, dest: Path) -> Path:
    """The PyPI components of a CycloneDX JSON SBOM, pinned (``name==version``)."""
    components = json.loads(sbom.read_text("utf-8")).get("components", [])
    pypi = [c for c in components if str(c.get("purl", "")).startswith("pkg:pypi/")]
    pinned = sorted({f"{c['name']}=={c['version']}" for c in pypi if c.get("version")})
    if not pinned:
        raise ValueError(f"{sbom}: no PyPI components with versions")
    dest.write_text("\n".join(pinned) + "\n", encoding="utf-8")
    return dest


def pip_audit(requirements: Path, service: str, report: Path) -> dict[str, Any]:
    cmd = [str(BIN / "pip-audit"), "-r", str(requirements), "--no-deps", "--disable-pip"]
    cmd += ["--vulnerability-service", service, "--progress-spinner", "off"]
    cmd += ["-f", "json", "-o", str(report)]
    log.info("audit: %s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed command
    if not report.exists():
        raise RuntimeError(f"pip-audit wrote no report ({done.returncode}): {done.stderr[-2000:]}")
    loaded: dict[str, Any] = json.loads(report.read_text())
    return loaded


def audit(service: str, work: Path, sbom: Path | None = None) -> Summary:
    target = work / "requirements.txt"
    requirements = sbom_requirements(sbom, target) if sbom else locked_requirements(target)
    count = sum(1 for line in requirements.read_text().splitlines() if "==" in line)
    log.info("audit: %d packages of %s against %s", count, sbom or "uv.lock", service)
    problem = service_reachable(service)
    if problem is not None:
        log.warning(
            "audit: SKIPPED, the %s vulnerability service is unreachable (%s)", service, problem
        )
        return Summary("unreachable", 0, {"*": problem})
    return summarise(pip_audit(requirements, service, work / "report.json"))


def report_summary(summary: Summary) -> None:
    for name, ids in sorted(summary.vulnerable.items()):
        log.error("audit: %s: %s", name, ", ".join(ids))
    if summary.skipped and summary.status != "unreachable":
        log.warning(
            "audit: %d package(s) not looked up: %s",
            len(summary.skipped),
            ", ".join(sorted(summary.skipped)),
        )
    log.info("audit: %s (%d audited, %d skipped, %d vulnerable)", summary.status, summary.audited,
             len(summary.skipped), len(summary.vulnerable))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=sorted(PROBES), default="pypi")
    parser.add_argument("--strict", action="store_true", help="fail when not everything is audited")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    parser.add_argument("--sbom", type=Path, help="audit this CycloneDX SBOM's packages instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="audit-") as work:
        summary = audit(args.service, Path(work), args.sbom)
    report_summary(summary)
    if args.out:
        args.out.write_text(json.dumps(asdict(summary), indent=2, sort_keys=True) + "\n")
    return exit_status(summary, args.strict)


if __name__ == "__main__":
    raise SystemExit(main())
