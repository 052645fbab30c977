"""The report's markdown: values, changes and tables, trimmed to fit a GitHub comment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flightdelay.core.errors import StageError

LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
HEADER = ("metric", "base", "head", "change")  # of every metrics table
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


def is_number(value: Value) -> bool:
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
    if not (is_number(old) and is_number(new)):
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
