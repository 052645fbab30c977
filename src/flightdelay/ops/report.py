"""The pull-request report: metrics, params, benchmark, quality gates and plots, base vs head.

Every number comes from DVC itself (``dvc metrics diff``, ``dvc params diff`` and ``dvc plots
diff``, all with ``--json``), so the report agrees with what a reviewer sees locally. Plot CSVs
are DVC-cached outputs, so the base's are read through ``dvc plots diff`` (from the cache), never
through ``git show``. The markdown stays under GitHub's comment limit: the largest tables are
trimmed first, and the report says so.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes

from flightdelay.core.dvc import dvc_json
from flightdelay.core.errors import StageError
from flightdelay.core.git import git
from flightdelay.core.io import run_main
from flightdelay.core.params import Gates, load_params
from flightdelay.pipeline.evaluate import check_gates

log = logging.getLogger(__name__)

CLASSES = 2  # a plot of two columns with at most this many values each is a confusion matrix
LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
HEAD = "workspace"  # DVC's name for the working tree
#: written outside the DAG (the HTTP benchmark); reported when present though not declared
EXTRA_METRICS = ("metrics/benchmark_http.json",)
README_BEGIN, README_END = "<!-- report:begin -->", "<!-- report:end -->"
HIGHER = {"roc_auc", "pr_auc", "f1", "precision", "recall"}
LOWER = {"log_loss", "brier"}
LOWER_TOKENS = {"ms", "latency", "size", "rss", "pss"}
LEGEND = (
    "▲/▼ up/down against the base; ✅ an improvement, ❌ a regression for that metric "
    "(higher is better: ROC/PR AUC, F1, precision, recall, rows/s; lower is better: log loss, "
    "Brier, latency, size, memory); counts and rates are unmarked."
)

Value = float | int | str | bool | None


def direction(key: str) -> int:
    """+1 when higher is better, -1 when lower is better, 0 for neutral values (counts, rates)."""
    name = key.rsplit(".", 1)[-1]
    if name in HIGHER or name.endswith(("per_s", "speedup")):
        return 1
    if name in LOWER or LOWER_TOKENS & set(name.split("_")):
        return -1
    return 0


def _is_num(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fmt(value: Value) -> str:
    """A metric value as a table cell: up to six decimals, '—' when absent."""
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in {"", "-0"} else text
    return str(value)


def change(old: Value, new: Value, sense: int) -> str:
    """Arrow, signed delta and a mark for improvement or regression."""
    if old is None:
        return "new" if new is not None else ""
    if new is None:
        return "removed"
    if not (_is_num(old) and _is_num(new)):
        return "" if old == new else "changed"
    delta = round(float(new) - float(old), 6)
    if delta == 0:
        return "= 0"
    arrow, sign = ("▲", "+") if delta > 0 else ("▼", "")
    mark = {1: " ✅", -1: " ❌"}.get(sense * (1 if delta > 0 else -1), "")
    return f"{arrow} {sign}{fmt(delta)}{mark}"


@dataclass
class Table:
    """A markdown table with a heading; ``trimmed`` counts rows dropped to fit the size cap."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    collapsed: bool = False
    trimmed: int = 0
    intro: str = ""

    def render(self) -> str:
        lines = [f"| {' | '.join(self.header)} |", "|" + "---|" * len(self.header)]
        lines += [f"| {' | '.join(row)} |" for row in self.rows]
        if self.trimmed:
            shown = len(self.rows)
            lines.append(
                f"\n_Trimmed to keep the report under GitHub's comment limit: "
                f"{shown} of {shown + self.trimmed} rows shown._"
            )
        body = "\n".join(lines)
        intro = f"{self.intro}\n\n" if self.intro else ""
        if self.collapsed:
            return f"<details><summary>{self.title}</summary>\n\n{intro}{body}\n\n</details>\n"
        return f"### {self.title}\n\n{intro}{body}\n"


Section = str | Table


def render(sections: Iterable[Section]) -> str:
    return "\n".join(s.render() if isinstance(s, Table) else s for s in sections)


def fit(sections: list[Section], limit: int = LIMIT) -> list[Section]:
    """Trim rows from the largest table until the whole report is at most ``limit`` characters.

    Raises:
        StageError: when even empty tables leave the report over the limit.
    """
    while (excess := len(render(sections)) - limit) > 0:
        tables = [s for s in sections if isinstance(s, Table) and s.rows]
        if not tables:
            raise StageError(f"report is {excess} characters over the {limit} limit")
        largest = max(tables, key=lambda t: len(t.render()))
        dropped = 0
        while largest.rows and dropped < excess + 120:  # 120: room for the trimming note
            dropped += len(" | ".join(largest.rows.pop())) + 5
            largest.trimmed += 1
    return sections


def metric_tables(diff: Mapping[str, Mapping[str, Mapping[str, Value]]]) -> list[Table]:
    """One table per metrics file (benchmarks apart), slice metrics in a collapsed table."""
    header = ("metric", "base", "head", "change")
    main: list[Table] = []
    bench = Table("Benchmark", header, [])
    slices = Table("", header, [], collapsed=True)
    for path, entries in sorted(diff.items()):
        table = Table(f"Metrics: `{path}`", header, [])
        for key in sorted(entries, key=lambda k: (not k.startswith("test."), k)):
            old, new = entries[key].get("old"), entries[key].get("new")
            row = (f"`{key}`", fmt(old), fmt(new), change(old, new, direction(key)))
            if Path(path).name.startswith("benchmark"):
                bench.rows.append((f"`{Path(path).stem}` {row[0]}", *row[1:]))
            elif key.startswith("slice."):
                slices.rows.append(row)
            else:
                table.rows.append(row)
        if table.rows:
            main.append(table)
    slices.title = f"Slice metrics ({len(slices.rows)} rows: per origin and per carrier)"
    return main + [t for t in (slices, bench) if t.rows]


def params_table(diff: Mapping[str, Mapping[str, Mapping[str, Value]]]) -> Table | str:
    """The params that differ from the base (``dvc params diff`` lists only those)."""
    rows: list[tuple[str, ...]] = [
        (f"`{key}`", fmt(e.get("old")), fmt(e.get("new")))
        for path, entries in sorted(diff.items())
        for key, e in sorted(entries.items())
    ]
    if not rows:
        return "### Params\n\nNo params changed.\n"
    return Table("Params changed", ("param", "base", "head"), rows)


def side(diff: Mapping[str, Mapping[str, Mapping[str, Value]]], which: str) -> dict[str, float]:
    """The numeric metrics of one side ('old' or 'new') of a metrics diff, by key."""
    return {
        key: float(e[which])  # type: ignore[arg-type]
        for entries in diff.values()
        for key, e in entries.items()
        if _is_num(e.get(which))
    }


def gates_table(head: dict[str, float], base: dict[str, float], gates: Gates) -> Table:
    """The quality gates of params.yaml, checked by the evaluate stage's own ``check_gates``."""
    rows: list[tuple[str, ...]] = []
    for name, metrics in (("head", head), ("base", base)):
        try:
            failed = check_gates(metrics, gates)
        except KeyError as exc:
            rows.append((name, "n/a", f"no metric {exc.args[0]}"))
            continue
        rows.append(
            (name, "❌ fail" if failed else "✅ pass", "; ".join(failed) or "all gates met")
        )
    bounds = ", ".join(f"`{k}` {v}" for k, v in gates.model_dump().items())
    return Table("Quality gates", ("side", "gates", "detail"), rows, intro=f"Gates: {bounds}.")


def build(
    metrics: Mapping[str, Any], params: Mapping[str, Any], gates: Gates, plots_md: str, title: str
) -> str:
    """The whole report as markdown, at most LIMIT characters."""
    sections: list[Section] = [
        f"## flight-delay report\n\n{title}\n\n{LEGEND}\n",
        gates_table(side(metrics, "new"), side(metrics, "old"), gates),
        params_table(params),
        *metric_tables(metrics),
    ]
    if not metrics:
        sections.append("### Metrics\n\nNo metrics found in the head or the base.\n")
    if plots_md:
        sections.append(plots_md)
    return render(fit(sections))


@dataclass
class Diffs:
    """What DVC reports for one base revision against the working tree."""

    base_sha: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)


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
    return Diffs(sha.strip()[:7], metrics, out["params"], out["plots"])


def plot_frames(plots: Mapping[str, Any], base: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per plot file: its title and one frame per side ('base', 'head') DVC could load."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, entries in plots.get("data", {}).items():
        content = entries[0].get("content", {}) if entries else {}
        values = pd.DataFrame(content.get("data", {}).get("values", []))
        if values.empty or "rev" not in values:
            continue
        title = content.get("title", path)
        title = title.get("text", path) if isinstance(title, dict) else str(title)
        sides = {
            name: values[values["rev"] == rev].drop(columns="rev").reset_index(drop=True)
            for name, rev in (("base", base), ("head", HEAD))
            if (values["rev"] == rev).any()
        }
        out[Path(path).stem] = (title, sides)
    return out


def _draw(ax: Axes, frame: pd.DataFrame, label: str) -> None:
    """One side of a plot, its kind read from the data as DVC's templates would draw it."""
    x, y = frame.columns[:2]
    num = frame.apply(pd.to_numeric, errors="coerce")
    if num[x].isna().all() or num[y].isna().all():  # a label column and a value: bars
        name, value = (x, y) if num[x].isna().all() else (y, x)
        bars = pd.DataFrame({"l": frame[name], "v": num[value]}).sort_values("v").tail(15)
        ax.barh(bars["l"], bars["v"])
        ax.set_xlabel(value)
    elif max(num[x].nunique(), num[y].nunique()) <= CLASSES:  # (actual, predicted) pairs
        counts = pd.crosstab(num[x].astype(int), num[y].astype(int))
        ax.imshow(counts.to_numpy(), cmap="Blues")
        for i, j in itertools.product(range(counts.shape[0]), range(counts.shape[1])):
            dark = counts.iat[i, j] > counts.to_numpy().max() / 2
            ax.text(
                j,
                i,
                str(counts.iat[i, j]),
                ha="center",
                va="center",
                color="white" if dark else "black",
            )
        ax.set_xticks(range(counts.shape[1]), [str(c) for c in counts.columns])
        ax.set_yticks(range(counts.shape[0]), [str(r) for r in counts.index])
        ax.set_xlabel(y)
        ax.set_ylabel(x)
    else:
        ax.plot(num[x], num[y])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    ax.set_title(label)


def render_plots(plots: Mapping[str, tuple[str, dict[str, Any]]], assets: Path, root: Path) -> str:
    """PNGs (base and head side by side) into ``assets``; markdown linking them from ``root``."""
    if not plots:
        return "### Plots\n\nNo plots in the head or the base.\n"
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415 - after choosing the headless backend

    assets.mkdir(parents=True, exist_ok=True)
    lines = ["### Plots\n"]
    for stem, (title, sides) in sorted(plots.items()):
        fig, axes = plt.subplots(1, len(sides), figsize=(5 * len(sides), 4), squeeze=False)
        for ax, (name, frame) in zip(axes[0], sides.items(), strict=True):
            _draw(ax, frame, name)
        fig.suptitle(title)
        fig.tight_layout()
        path = assets / f"{stem}.png"
        fig.savefig(path, dpi=72)
        plt.close(fig)
        note = "" if "base" in sides else " (head only: no base plot in the DVC cache)"
        link = Path(os.path.relpath(path, root)).as_posix()
        lines.append(f"**{title}**{note}\n\n![{title}]({link})\n")
    return "\n".join(lines)


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
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="gates' source")
    parser.add_argument("--readme", type=Path, help="also splice the report (no images) here")
    args = parser.parse_args(argv)

    def body() -> None:
        repo = Path.cwd()
        gates = load_params(args.params).evaluate.gates
        diffs = collect(args.base, repo)
        assets = args.assets or args.out.parent / f"{args.out.stem}_assets"
        sides = plot_frames(diffs.plots, args.base)
        log.info("rendering %d plots into %s", len(sides), assets)
        plots_md = render_plots(sides, assets, args.out.parent)
        title = f"Working tree against base `{args.base}` ({diffs.base_sha})."
        text = build(diffs.metrics, diffs.params, gates, plots_md, title)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        log.info("wrote %s (%d characters)", args.out, len(text))
        if args.readme:
            block = build(diffs.metrics, diffs.params, gates, "", title)
            args.readme.write_text(splice(args.readme.read_text("utf-8"), block), "utf-8")
            log.info("updated the report block of %s", args.readme)

    return run_main("report", body)


if __name__ == "__main__":
    raise SystemExit(main())
