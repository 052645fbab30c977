"""The report's answer, on top: are the gates green, and is the head better beyond noise."""

from __future__ import annotations

from collections.abc import Mapping

from flightdelay.ops.significance import METRICS, NAMES, Interval
from flightdelay.ops.tables import HEADER, Table, Value, change, fmt, is_number

Diff = Mapping[str, Mapping[str, Mapping[str, Value]]]
GROUPS = {1: "improved beyond noise", -1: "regressed beyond noise", 0: "within noise"}
ANSWERS = {  # (any improvement, any regression) beyond noise -> the answer
    (True, False): "Yes",
    (False, True): "No, worse",
    (True, True): "Mixed",
    (False, False): "No change beyond noise",
}


def _tested(diff: Diff) -> dict[str, Mapping[str, Value]]:
    """The diff entries of the test metrics that get intervals, by metric name."""
    found = {key: entry for entries in diff.values() for key, entry in entries.items()}
    return {name: found[f"test.{name}"] for name in METRICS if f"test.{name}" in found}


def interval_table(
    diff: Diff, intervals: Mapping[str, Interval], confidence: float
) -> Table | None:
    """The test metrics with base, head, change, interval and verdict; None without any."""
    rows: list[tuple[str, ...]] = []
    for name, entry in _tested(diff).items():
        old, new = entry.get("old"), entry.get("new")
        found = intervals.get(name)
        bounds = f"[{found.low:+.4f}, {found.high:+.4f}]" if found else "—"
        verdict = found.verdict() if found else "no interval"
        rows.append(
            (f"`test.{name}`", fmt(old), fmt(new), change(old, new, METRICS[name]), bounds, verdict)
        )
    if not rows:
        return None
    header = (*HEADER, f"{confidence * 100:g} % interval", "verdict")
    intro = "Head − base; a change whose interval includes 0 is within noise."
    return Table("Test metrics: signal or noise", header, rows, intro=intro)


def answer(diff: Diff, intervals: Mapping[str, Interval]) -> str:
    """'Better?' and the changes that say so, grouped by their verdict."""
    if not intervals:
        changes = [
            f"{NAMES[name]} {float(e['new']) - float(e['old']):+.4f}"  # type: ignore[arg-type]
            for name, e in _tested(diff).items()
            if is_number(e.get("old")) and is_number(e.get("new"))
        ]
        return (
            f"**Better?** Cannot tell without intervals; changes: {' · '.join(changes) or 'none'}."
        )
    groups: dict[int, list[str]] = {effect: [] for effect in GROUPS}
    for name, found in intervals.items():
        groups[found.effect].append(f"{NAMES[name]} {found.text()}")
    said = "; ".join(f"{GROUPS[k]}: {', '.join(v)}" for k, v in groups.items() if v)
    return f"**Better?** {ANSWERS[bool(groups[1]), bool(groups[-1])]} — {said}."


def headline(
    status: Mapping[str, str], diff: Diff, intervals: Mapping[str, Interval], note: str
) -> str:
    """Three lines: the gates of both sides, the answer, and how the intervals were drawn."""
    gates = f"**Gates:** {status['head']} (head) · {status['base']} (base)"
    return f"{gates}\n\n{answer(diff, intervals)}\n\n<sub>{note}</sub>"
