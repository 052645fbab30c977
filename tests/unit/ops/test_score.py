"""``flightdelay score``: chunks, the request contract per row, rejects, order and identity.

A small real model (the hgb candidate fitted on synthetic records) scores real Parquet and CSV
files written to a temporary folder; the reference is the Pipeline's own ``predict_proba``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PLANES, make_records
from flightdelay.contract.schema import TARGET
from flightdelay.core.dvc import file_md5
from flightdelay.core.params import HGBParams
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba
from flightdelay.model.store import load_model, save_model
from flightdelay.ops import score

THRESHOLD = 0.35


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = make_records(1500, seed=2)
    fitted = build("hgb", HGBParams(max_iter=30, min_samples_leaf=5), 3, PLANES)
    path = tmp_path_factory.mktemp("score") / "model.joblib"
    save_model(fitted.fit(train.drop(columns=[TARGET]), train[TARGET]), path)
    return path


def flights(n: int) -> pd.DataFrame:
    frame = make_records(n, seed=11).drop(columns=[TARGET])
    frame.insert(0, "flight", np.arange(1000, 1000 + n))  # an identity column the model ignores
    return frame


def run(model: Path, source: Path, out: Path, chunk_rows: int) -> score.Totals:
    options = score.Options(out.with_suffix(".rejects.parquet"), THRESHOLD, chunk_rows, False)
    return score.score(model, source, out, options)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_every_flight_in_order_equal_to_the_pipeline(
    model: Path, tmp_path: Path, suffix: str
) -> None:
    frame = flights(230)
    source = tmp_path / f"in{suffix}"
    frame.to_parquet(source) if suffix == ".parquet" else frame.to_csv(source, index=False)
    totals = run(model, source, tmp_path / "out.parquet", chunk_rows=64)  # four chunks
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert (totals.rows, totals.scored, totals.rejected) == (230, 230, 0)
    assert out["row"].tolist() == list(range(230))
    assert out["flight"].tolist() == frame["flight"].tolist()
    reference = predict_proba(load_model(model), frame)
    np.testing.assert_allclose(out["probability"], reference, rtol=0, atol=1e-9)
    assert out["delayed"].tolist() == (reference >= THRESHOLD).tolist()
    assert set(out["model_version"]) == {file_md5(model)}
    assert pd.read_parquet(tmp_path / "out.rejects.parquet").empty


def test_the_chunk_size_changes_nothing(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    flights(101).to_parquet(source)
    run(model, source, tmp_path / "one.parquet", chunk_rows=1000)
    run(model, source, tmp_path / "many.parquet", chunk_rows=7)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "many.parquet")
    )


def test_bad_rows_are_rejected_by_field_and_the_run_goes_on(model: Path, tmp_path: Path) -> None:
    frame = flights(40).astype({"carrier": object, "day": object})
    frame.loc[3, "sched_dep_time"] = 1261  # minutes past 59
    frame.loc[5, "carrier"] = "toolong"
    frame.loc[9, ["month", "day"]] = [2, 30]  # no such date
    frame.loc[12, "temp"] = 500.0  # beyond the contract's bound
    frame.loc[12, "distance"] = -1.0  # and a second problem on the same row
    frame.loc[30, "day"] = "x"  # not a number
    source = tmp_path / "in.parquet"
    frame.astype({"day": str}).to_parquet(source)
    totals = run(model, source, tmp_path / "out.parquet", chunk_rows=16)
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    bad = {3, 5, 9, 12, 30}
    assert (totals.scored, totals.rejected) == (40 - len(bad), len(bad))
    assert set(rejects["row"]) == bad
    fields = set(zip(rejects["row"], rejects["field"], strict=True))
    assert {(3, "sched_dep_time"), (5, "carrier"), (9, "year/month/day"), (12, "temp"),
            (12, "distance"), (30, "year/month/day")} <= fields  # fmt: skip
    problems = dict(zip(rejects["row"], rejects["problem"], strict=True))
    assert problems[3] == "minutes must be below 60"
    assert problems[9] == "not a real date"
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert sorted(set(range(40)) - set(out["row"])) == sorted(bad)
    good = frame.drop(index=sorted(bad)).astype({"carrier": str, "day": "int64"})
    reference = predict_proba(load_model(model), good.drop(columns=["flight"]))
    np.testing.assert_allclose(out["probability"], reference, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("missing", "no such input file"),
        ("year,month\n2013,1\n", "the input has no column day, sched_dep_time"),
        ("not,a,csv\n\x00\x01,\n1,2,3,4\n", "cannot read"),
    ],
)
def test_a_run_that_cannot_go_on_is_one_clear_line_and_writes_nothing(
    model: Path,
    tmp_path: Path,
    content: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.csv"
    if content != "missing":
        source.write_text(content)
    out = tmp_path / "out.parquet"
    args = ["--model", str(model), "--in", str(source), "--out", str(out), "--no-progress"]
    assert score.main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("score: error: ") and message in last, last
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        [] if content == "missing" else ["in.csv"]
    )
