"""The service's pure parts: code checks, the request model, its HTTP edges (guard, 400 log)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from pydantic import ValidationError

from flightdelay.contract.schema import Flight
from flightdelay.serving.edges import ClientErrorLog, RequestGuard, drain
from flightdelay.serving.service import MAX_FLIGHTS, FlightsInput, unknown_codes

EXAMPLE = Flight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
KNOWN = {"carrier": {"UA": 0}, "origin": {"EWR": 0, "JFK": 1}, "dest": {"ORD": 0}}


def test_known_codes_pass() -> None:
    assert unknown_codes([Flight(**EXAMPLE)], KNOWN) == []


def test_each_unknown_code_is_named_with_its_position() -> None:
    flights = [Flight(**EXAMPLE), Flight(**{**EXAMPLE, "origin": "LGA", "carrier": "ZZ"})]
    assert unknown_codes(flights, KNOWN) == [
        "[1].carrier: unknown carrier code 'ZZ'",
        "[1].origin: unknown airport code 'LGA'",
    ]


def test_malformed_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="Invalid JSON"):
        FlightsInput.model_validate_json(b'[{"year": 2013')


def _body(n: int) -> str:
    return json.dumps([EXAMPLE] * n)


def test_request_body_is_a_bounded_list_of_flights() -> None:
    """From one flight to MAX_FLIGHTS: an empty list and one flight too many are refused,
    naming the bound."""
    assert FlightsInput.model_validate_json(f"[{Flight(**EXAMPLE).model_dump_json()}]").root
    assert len(FlightsInput.model_validate_json(_body(MAX_FLIGHTS)).root) == MAX_FLIGHTS
    with pytest.raises(ValidationError, match="at least 1 item"):
        FlightsInput.model_validate_json(b"[]")
    with pytest.raises(
        ValidationError, match=rf"at most {MAX_FLIGHTS} items after .* {MAX_FLIGHTS + 1}"
    ):
        FlightsInput.model_validate_json(_body(MAX_FLIGHTS + 1))


def test_openapi_schema_has_an_example_not_examples() -> None:
    flight = FlightsInput.model_json_schema()["$defs"]["Flight"]
    assert flight["example"]["origin"] == "EWR"
    assert "examples" not in flight


def _scope(
    path: str = "/predict", kind: bytes = b"application/json", length: bytes = b"10"
) -> dict:
    headers = [(b"content-type", kind), (b"content-length", length)]
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def test_request_guard_refuses_oversized_and_non_json_predict_bodies() -> None:
    guard = RequestGuard(app=None, max_body_bytes=100)  # type: ignore[arg-type]
    assert guard.problem(_scope()) is None
    assert guard.problem(_scope(length=b"101")) == (
        413, "body of 101 bytes exceeds the limit of 100 bytes"
    )  # fmt: skip
    assert guard.problem(_scope(kind=b"multipart/form-data")) == (
        400,
        "Content-Type must be application/json, got 'multipart/form-data'",
    )
    assert guard.problem(_scope(path="/healthz", kind=b"text/plain")) is None
    chunked = _scope()
    chunked["headers"] = [(b"content-type", b"application/json")]  # no length: counted as read
    assert guard.problem(chunked) is None


def _record(exc: BaseException | None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord(
        "bentoml._internal.server.http_app", logging.ERROR, __file__, 1,
        "Exception on %s [%s]", ("/predict", "POST"), exc_info,
    )  # fmt: skip


def test_a_rejected_body_is_logged_as_one_warning_line() -> None:
    try:
        FlightsInput.model_validate_json(b'[{"year": 2013}]')
    except ValidationError as exc:
        record = _record(exc)
    assert ClientErrorLog().filter(record)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    line = record.getMessage()
    assert line.startswith("400 for /predict [POST]: root.0.month: Field required; ")
    assert line.endswith("more)")


def test_a_server_fault_keeps_its_traceback() -> None:
    record = _record(RuntimeError("boom"))
    assert ClientErrorLog().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.getMessage() == "Exception on /predict [POST]"


def test_drain_reads_a_refused_body_to_its_end_within_a_bound() -> None:
    """The guard discards what is left of a refused body, but never more than its bound of bytes
    or of time: an endless body or a stalled client cannot hold the worker."""
    calls: list[int] = []

    async def endless() -> dict[str, Any]:
        calls.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    asyncio.run(drain(endless, limit=10_000, seconds=5))
    assert len(calls) == 11  # 11,000 bytes read: one chunk past the bound, then it stops

    async def stalled() -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    started = time.perf_counter()
    asyncio.run(drain(stalled, limit=10_000, seconds=0.2))
    assert time.perf_counter() - started < 5

    ended = [{"type": "http.request", "body": b"ab", "more_body": True},
             {"type": "http.request", "body": b"c", "more_body": False}]  # fmt: skip

    async def finite() -> dict[str, Any]:
        return ended.pop(0)

    asyncio.run(drain(finite, limit=10_000, seconds=5))
    assert ended == []
