from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from flightdelay.core.errors import ParamsError
from flightdelay.core.params import load_params


def _write(tmp_path: Path, mutate: object) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(params)  # type: ignore[operator]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repository_params_parse() -> None:
    params = load_params(ROOT / "params.yaml")
    assert params.features.split.valid_months == (10,)
    assert set(params.train.candidates.names()) == {"logreg", "hgb"}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["train"]["candidates"]["hgb"].update(learning_rat=0.1))
    with pytest.raises(ParamsError, match=r"train\.candidates\.hgb\.learning_rat: Extra inputs"):
        load_params(path)


def test_out_of_range_value_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["ingest"].update(sample_frac=1.5))
    with pytest.raises(ParamsError, match=r"ingest\.sample_frac"):
        load_params(path)


def test_overlapping_months_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["features"]["split"].update(valid_months=[9, 10]))
    with pytest.raises(ParamsError, match="must not overlap"):
        load_params(path)


def test_no_candidates_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda p: p["train"].update(candidates={}))
    with pytest.raises(ParamsError, match="at least one candidate"):
        load_params(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read params"):
        load_params(tmp_path / "nope.yaml")
