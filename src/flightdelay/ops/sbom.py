"""The Bento's software bill of materials: CycloneDX JSON of the Python packages its image installs.

``cyclonedx-py requirements`` reads the Bento's own pinned ``env/python/requirements.txt`` (what
``bentoml containerize`` installs, the versions of uv.lock) with the project as the root
component, and writes ``sbom.cdx.json`` into the Bento's folder, so the SBOM travels with the
Bento (``bentoml export``) and into its image. ``scripts/audit.py --sbom`` audits its packages.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from flightdelay.core.errors import StageError

log = logging.getLogger(__name__)

SBOM = "sbom.cdx.json"


def write_sbom(bento_dir: Path, pyproject: Path) -> Path:
    """Write ``bento_dir``/``SBOM`` from its requirements; returns its path.

    Raises:
        StageError: the Bento has no requirements file, or cyclonedx-py failed.
    """
    requirements = bento_dir / "env" / "python" / "requirements.txt"
    if not requirements.is_file():
        raise StageError(f"{bento_dir}: no {requirements.relative_to(bento_dir)} to list")
    out = bento_dir / SBOM
    tool = str(Path(sys.executable).parent / "cyclonedx-py")
    cmd = [tool, "requirements", str(requirements), "--pyproject", str(pyproject)]
    cmd += ["--of", "JSON", "--output-reproducible", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - our tool, our paths
    if done.returncode != 0:
        raise StageError(f"cyclonedx-py failed ({done.returncode}): {done.stderr.strip()[-1000:]}")
    count = len(json.loads(out.read_text("utf-8")).get("components", []))
    log.info("SBOM of %d packages: %s", count, out)
    return out
