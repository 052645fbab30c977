"""The report's plots as DVC defines them: ``dvc plots diff`` specs rendered to PNG.

``dvc plots diff <base> --json`` fills each plot's template (dvc.yaml's ``template``, ``x``, ``y``
and ``title``) with the data of both revisions and returns the Vega-Lite spec DVC itself would
show, each revision in its own colour or facet. vl-convert renders that spec to PNG offline (no
URL may be fetched: DVC inlines the data), so changing a plot's template in dvc.yaml changes the
picture in the report, and no chart type is guessed here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vl_convert

from flightdelay.core.errors import StageError

log = logging.getLogger(__name__)

SCALE = 1.5  # PNG pixels per Vega-Lite pixel: DVC's templates draw 300 x 300 charts


@dataclass(frozen=True)
class Plot:
    """One Vega-Lite spec of ``dvc plots diff``: the file it draws, its title and revisions."""

    name: str
    title: str
    spec: dict[str, Any]
    revisions: tuple[str, ...]


def specs(diff: Mapping[str, Any]) -> list[Plot]:
    """The Vega-Lite plots of a ``dvc plots diff --json`` answer, one per spec DVC filled."""
    out = []
    for path, entries in sorted(diff.get("data", {}).items()):
        vega = [e for e in entries if e.get("type") == "vega"]
        for i, entry in enumerate(vega):
            spec = entry["content"]
            title = spec.get("title", path)
            text = title.get("text", path) if isinstance(title, dict) else str(title)
            name = Path(path).stem + (f"-{i}" if len(vega) > 1 else "")
            out.append(Plot(name, text, spec, tuple(entry.get("revisions", ()))))
    for error in diff.get("errors", []):
        log.warning("dvc plots diff: %s", error)
    return out


def vegalite_version(spec: Mapping[str, Any]) -> str | None:
    """The newest Vega-Lite of vl-convert with the major version of the spec's ``$schema``
    (DVC's templates declare v5); None, vl-convert's default, when the schema names none."""
    found = re.search(r"/vega-lite/v(\d+)", str(spec.get("$schema", "")))
    if not found:
        return None
    same = [v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == found.group(1)]
    return max(same, key=lambda v: tuple(int(p) for p in v.split("."))) if same else None


def png(plot: Plot) -> bytes:
    """The plot as PNG, from its spec alone.

    Raises:
        StageError: naming the plot when vl-convert cannot render its spec.
    """
    try:
        return vl_convert.vegalite_to_png(
            plot.spec, vegalite_version(plot.spec), scale=SCALE, allowed_base_urls=[]
        )
    except ValueError as exc:
        reason = " ".join(str(exc).strip().splitlines()[:2])  # the rest is a JavaScript trace
        raise StageError(f"plot {plot.name!r} ({plot.title}): {reason}") from exc


def render_plots(diff: Mapping[str, Any], base: str, assets: Path, root: Path) -> str:
    """Each plot of ``diff`` as a PNG in ``assets``; the markdown that links them from ``root``.

    Args:
        diff: the answer of ``dvc plots diff <base> --json``.
        base: the base revision as DVC names it in the plots.
        assets: the folder for the PNGs.
        root: the folder of the markdown file, for relative links.
    """
    plots = specs(diff)
    if not plots:
        return "### Plots\n\nNo plots in the head or the base.\n"
    assets.mkdir(parents=True, exist_ok=True)
    lines = [
        f"### Plots\n\nDVC's templates (dvc.yaml), base `{base}` beside the head (`workspace`).\n"
    ]
    for plot in plots:
        path = assets / f"{plot.name}.png"
        path.write_bytes(png(plot))
        note = "" if base in plot.revisions else " (head only: no base plot data in the DVC cache)"
        link = Path(os.path.relpath(path, root)).as_posix()
        lines.append(f"**{plot.title}**{note}\n\n![{plot.title}]({link})\n")
    log.info("rendered %d plots into %s", len(plots), assets)
    return "\n".join(lines)
