"""The pull-request report: is the head better than the base, beyond noise, and are gates green.

Every number comes from DVC itself (``dvc metrics diff``, ``dvc params diff`` and ``dvc plots
diff``, all with ``--json``), so the report agrees with what a reviewer sees locally. The changes
of the test metrics get paired-bootstrap intervals over the test flights (both models' cached
predictions, ``flightdelay.ops.paired``), and the plots are DVC's own templates rendered to PNG
(``flightdelay.ops.plots``). Unchanged metrics are folded away; the markdown stays under GitHub's
comment limit: the largest tables are trimmed first, and the report says so.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flightdelay.core.dvc import dvc_json
from flightdelay.core.errors import StageError
from flightdelay.core.git import git
from flightdelay.core.io import run_main
from flightdelay.core.params import Gates, Params, load_params
from flightdelay.ops import paired
from flightdelay.ops.plots import render_plots
from flightdelay.ops.significance import METRICS, Interval, paired_bootstrap
from flightdelay.ops.tables import (
    HEADER,
    LEGEND,
    Section,
    Table,
    Value,
    change,
    direction,
    fit,
    fmt,
    is_number,
    render,
)
from flightdelay.ops.verdict import headline, interval_table
from flightdelay.pipeline.evaluate import check_gates

log = logging.getLogger(__name__)

#: written outside the DAG (the HTTP benchmark); reported when present though not declared
EXTRA_METRICS = ("metrics/benchmark_http.json",)
README_BEGIN, README_END = "<!-- report:begin -->", "<!-- report:end -->"

Diff = Mapping[str, Mapping[str, Mapping[str, Value]]]


@dataclass
class Diffs:
    """What DVC reports for one base revision against the working tree."""

    base: str
    sha: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"Working tree against base `{self.base}` ({self.sha[:7]})."


@dataclass(frozen=True)
class Noise:
    """The intervals of the test metrics' changes, and how they were drawn (or why not)."""

    intervals: Mapping[str, Interval]
    note: str
    confidence: float = 0.95


def _route(path: str, key: str, changed: str, bench: bool) -> str:
    """Which table a metric's row goes to: unchanged, benchmark, slices or its file's."""
    if changed in {"= 0", ""}:
        return "unchanged"
    if bench:
        return "benchmark"
    return "slices" if key.startswith("slice.") else path


def metric_tables(diff: Diff, skip: Collection[str] = ()) -> list[Table]:
    """Changed metrics, one table per metrics file (benchmarks apart, slice metrics collapsed),
    then the unchanged metrics folded into one collapsed table; ``skip``: keys shown elsewhere."""
    tables: dict[str, Table] = {}
    for path, entries in sorted(diff.items()):
        bench = Path(path).name.startswith("benchmark")
        for key in sorted(entries, key=lambda k: (not k.startswith("test."), k)):
            if key in skip and not bench:
                continue
            old, new = entries[key].get("old"), entries[key].get("new")
            label = f"`{Path(path).stem}` `{key}`" if bench else f"`{key}`"
            row = (label, fmt(old), fmt(new), change(old, new, direction(key)))
            where = _route(path, key, row[3], bench)
            tables.setdefault(where, Table(f"Metrics: `{where}`", HEADER, [])).rows.append(row)
    special = {
        "slices": ("Slice metrics ({} changed: per origin and per carrier)", True),
        "benchmark": ("Benchmark", False),
        "unchanged": ("Unchanged metrics ({})", True),
    }
    for name, (title, collapsed) in special.items():
        if name in tables:
            table = tables.pop(name)
            table.title, table.collapsed = title.format(len(table.rows)), collapsed
            tables[name] = table  # after the files' tables, in this order
    return list(tables.values())


def params_table(diff: Diff) -> Table | str:
    """The params that differ from the base (``dvc params diff`` lists only those)."""
    rows: list[tuple[str, ...]] = [
        (f"`{key}`", fmt(e.get("old")), fmt(e.get("new")))
        for path, entries in sorted(diff.items())
        for key, e in sorted(entries.items())
    ]
    if not rows:
        return "### Params\n\nNo params changed.\n"
    return Table("Params changed", ("param", "base", "head"), rows)


def side(diff: Diff, which: str) -> dict[str, float]:
    """The numeric metrics of one side ('old' or 'new') of a metrics diff, by key."""
    return {
        key: float(e[which])  # type: ignore[arg-type]
        for entries in diff.values()
        for key, e in entries.items()
        if is_number(e.get(which))
    }


def gate_status(metrics: dict[str, float], gates: Gates) -> tuple[str, str]:
    """'✅ pass', '❌ fail' or 'n/a', and what failed (by the evaluate stage's ``check_gates``)."""
    try:
        failed = check_gates(metrics, gates)
    except KeyError as exc:
        return "n/a", f"no metric {exc.args[0]}"
    return ("❌ fail" if failed else "✅ pass"), "; ".join(failed) or "all gates met"


def gates_table(head: dict[str, float], base: dict[str, float], gates: Gates) -> Table:
    """The quality gates of params.yaml on both sides."""
    rows: list[tuple[str, ...]] = [
        (name, *gate_status(metrics, gates)) for name, metrics in (("head", head), ("base", base))
    ]
    bounds = ", ".join(f"`{k}` {v}" for k, v in gates.model_dump().items())
    return Table("Quality gates", ("side", "gates", "detail"), rows, intro=f"Gates: {bounds}.")


def build(diffs: Diffs, gates: Gates, noise: Noise, plots_md: str = "") -> str:
    """The whole report as markdown, at most ``tables.LIMIT`` characters."""
    head, base = side(diffs.metrics, "new"), side(diffs.metrics, "old")
    status = {
        name: gate_status(metrics, gates)[0] for name, metrics in (("head", head), ("base", base))
    }
    top = headline(status, diffs.metrics, noise.intervals, noise.note)
    intervals = interval_table(diffs.metrics, noise.intervals, noise.confidence)
    sections: list[Section] = [
        f"## flight-delay report\n\n{top}\n\n{diffs.title}\n\n{LEGEND}\n",
        *([intervals] if intervals else []),
        gates_table(head, base, gates),
        params_table(diffs.params),
        *metric_tables(diffs.metrics, skip={f"test.{m}" for m in METRICS} if intervals else ()),
    ]
    if not diffs.metrics:
        sections.append("### Metrics\n\nNo metrics found in the head or the base.\n")
    if plots_md:
        sections.append(plots_md)
    return render(fit(sections))


def collect(base: str, repo: Path) -> Diffs:
    """Metrics, params and plots of ``base`` against the working tree, from DVC."""
    try:
        sha = git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except StageError as exc:
        raise StageError(f"base {base!r} is not a commit here (shallow clone?)") from exc
    extra = [p for p in EXTRA_METRICS if (repo / p).is_file()]
    calls = {
        "metrics": ["metrics", "diff", base, "--all"],
        "params": ["params", "diff", base],
        "plots": ["plots", "diff", base],
        "extra": ["metrics", "diff", base, "--all", "--targets", *extra] if extra else [],
    }
    log.info("dvc metrics/params/plots diff against %s", base)
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:  # each dvc start takes seconds
        jobs = {name: pool.submit(dvc_json, args, repo) for name, args in calls.items() if args}
        out = {name: job.result() for name, job in jobs.items()}
    metrics = out.get("extra", {}) | out["metrics"]  # declared metrics win over the extras
    return Diffs(base, sha.strip(), metrics, out["params"], out["plots"])


def noise(diffs: Diffs, params: Params, repo: Path) -> Noise:
    """Paired-bootstrap intervals of the test metrics' changes, or the reason there are none."""
    conf = params.report.confidence
    try:
        pair = paired.load(diffs.base, diffs.sha, repo)
    except StageError as exc:
        log.warning("no intervals: %s", exc)
        return Noise({}, f"No intervals: {exc}.", conf)
    start = time.perf_counter()
    intervals = paired_bootstrap(pair.y, pair.base, pair.head, params.report, params.base.seed)
    resamples = params.report.bootstrap_resamples
    log.info("paired bootstrap: %d resamples of %d flights in %.1f s",
             resamples, len(pair.y), time.perf_counter() - start)  # fmt: skip
    note = (
        f"{conf * 100:g} % paired-bootstrap intervals of head − base: {resamples:,} resamples "
        f"(seed {params.base.seed}) of the same {len(pair.y):,} test flights, both models scored "
        f"on each; the base's predictions were {pair.source}."
    )
    return Noise(intervals, note, conf)


def splice(readme: str, block: str) -> str:
    """Replace the text between the README's report markers with ``block``, headings demoted.

    Raises:
        StageError: when the markers are missing.
    """
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise StageError(f"README has no {README_BEGIN} ... {README_END} block")
    block = re.sub(r"^(#+) ", r"#\1 ", block.strip(), flags=re.MULTILINE)  # under a README ##
    return f"{readme[: start + len(README_BEGIN)]}\n{block}\n{readme[end:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flightdelay report", description=__doc__)
    parser.add_argument("--base", default="main", help="Git ref to compare with (default: main)")
    parser.add_argument("--out", type=Path, default=Path("report.md"), help="markdown to write")
    parser.add_argument("--assets", type=Path, help="PNG folder (default: next to --out)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="gates, bootstrap")
    parser.add_argument("--readme", type=Path, help="also splice the report (no images) here")
    args = parser.parse_args(argv)

    def body() -> None:
        repo = Path.cwd()
        params = load_params(args.params)
        diffs = collect(args.base, repo)
        evidence = noise(diffs, params, repo)
        assets = args.assets or args.out.parent / f"{args.out.stem}_assets"
        plots_md = render_plots(diffs.plots, args.base, assets, args.out.parent)
        text = build(diffs, params.evaluate.gates, evidence, plots_md)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        log.info("wrote %s (%d characters)", args.out, len(text))
        if args.readme:
            block = build(diffs, params.evaluate.gates, evidence)
            args.readme.write_text(splice(args.readme.read_text("utf-8"), block), "utf-8")
            log.info("updated the report block of %s", args.readme)

    return run_main("report", body)


if __name__ == "__main__":
    raise SystemExit(main())
