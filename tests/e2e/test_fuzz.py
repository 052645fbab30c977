"""API fuzzing: schemathesis (`st run --checks all`) against a live `bentoml serve` of the Bento.

Cases come from the service's own OpenAPI document (``/docs.json``): valid and invalid bodies,
wrong types, missing and extra fields, boundary values, unsupported methods. Every response must
be no 5xx and must match the documented status codes, content type and response schema.

The run is benchmarks/fuzz.py's (`make fuzz` runs it longer, on the full model), on the document as
served. Two tests below hold the service to the corrections of BentoML's document that make that
possible (``flightdelay.serving.edges.corrected_document``):

* BentoML declares OpenAPI 3.0.2 but writes JSON Schema 2020 forms (``exclusiveMinimum: 0``,
  ``anyOf [..., {type: null}]``), from which schemathesis cannot generate bodies for POST /predict;
* BentoML's 400 schema (``InvalidArgument``) says ``detail`` is a string, while it answers a list
  of pydantic errors.

A request that is not JSON (e.g. ``Content-Type: multipart/form-data``) is refused with a 400
before BentoML's form parser sees it (it used to be a 500).

One check is left out, ``positive_data_acceptance`` (a body valid under the schema must get a
2xx): the schema cannot say "a code the model knows" or "a real calendar date", so bodies such as
``origin: "AAA"`` or February 30 are rightly a 400 naming the field (tests/e2e/test_api_http.py).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_helpers import GOOD, shared_server

from benchmarks import fuzz
from benchmarks.loopback import Server

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, small_repo: Path) -> Server:
    return shared_server(request, small_repo, "default")


def _statuses(report: Path) -> Counter[int]:
    """Response status codes in schemathesis' NDJSON event stream."""
    found: Counter[int] = Counter()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            response = node.get("response")
            if isinstance(response, dict) and isinstance(response.get("status_code"), int):
                found[response["status_code"]] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for line in report.read_text().splitlines():
        if line.strip():
            walk(json.loads(line))
    return found


def test_schemathesis_finds_no_5xx_and_no_schema_violation(server: Server, tmp_path: Path) -> None:
    done = subprocess.run(
        fuzz.st_command(server.url, tmp_path, MAX_EXAMPLES, 50),
        cwd=tmp_path,  # schemathesis keeps a cache directory in its working directory
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    output = done.stdout[-8000:] + done.stderr[-2000:]
    assert done.returncode == 0, output
    assert "Schema Error" not in done.stdout, output
    assert "POST /predict" in done.stdout, output
    statuses = _statuses(tmp_path / "events.ndjson")
    assert sum(statuses.values()) > 200, statuses  # the run really exercised the API
    # the server is still healthy and still answers a good request
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    assert httpx.post(f"{server.url}/predict", json=[GOOD], timeout=30).status_code == 200


def _forms_of_3_1(node: object, path: str = "") -> list[str]:
    """Where a document uses JSON Schema 2020 forms that OpenAPI 3.0 does not have."""
    if isinstance(node, list):
        return [p for i, item in enumerate(node) for p in _forms_of_3_1(item, f"{path}/{i}")]
    if not isinstance(node, dict):
        return []
    found = [f"{path}/{bound}" for bound in ("exclusiveMinimum", "exclusiveMaximum")
             if not isinstance(node.get(bound, True), bool)]  # fmt: skip
    if {"type": "null"} in node.get("anyOf", []) or node.get("type") == "null":
        found.append(f"{path}/anyOf")
    return found + [p for k, v in node.items() for p in _forms_of_3_1(v, f"{path}/{k}")]


def test_openapi_document_uses_only_forms_of_its_declared_version(server: Server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert spec["openapi"].startswith("3.0")
    assert _forms_of_3_1(spec) == []
    distance = spec["components"]["schemas"]["Flight"]["properties"]["distance"]
    assert (distance["minimum"], distance["exclusiveMinimum"]) == (0, True)
    temp = spec["components"]["schemas"]["Flight"]["properties"]["temp"]
    assert temp["nullable"] is True


def test_bad_request_body_matches_its_documented_schema(server: Server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    documented = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    resp = httpx.post(f"{server.url}/predict", json=[{**GOOD, "distance": -1}], timeout=30)
    assert resp.status_code == 400
    kinds = {"list": "array", "str": "string"}
    assert {"type": kinds[type(resp.json()["detail"]).__name__]} in [
        {"type": option["type"]} for option in documented["anyOf"]
    ]


def test_undeclared_content_type_is_refused_with_a_4xx(server: Server) -> None:
    headers = {"content-type": "multipart/form-data"}
    body = json.dumps([GOOD]).encode()
    resp = httpx.post(f"{server.url}/predict", content=body, headers=headers, timeout=30)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert "Content-Type must be application/json" in resp.json()["error"]
