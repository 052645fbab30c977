"""API fuzzing: schemathesis (`st run --checks all`) against a live `bentoml serve` of the Bento.

Cases come from the service's own OpenAPI document (``/docs.json``): valid and invalid bodies,
wrong types, missing and extra fields, boundary values, unsupported methods. Every response must
be no 5xx and must match the documented status codes, content type and response schema.

The run is scripts/fuzz.py's (`make fuzz` runs it longer, on the full model). Two known defects
of the live document are repaired in the copy schemathesis reads, and each is pinned by a strict
xfail below (when the service fixes one, its xfail fails: drop the repair):

* it declares OpenAPI 3.0.2 but uses JSON Schema 2020 forms (``exclusiveMinimum: 0``,
  ``anyOf [..., {type: null}]``): schemathesis cannot generate bodies for POST /predict from it;
* its 400 schema (BentoML's ``InvalidArgument``) says ``detail`` is a string, while BentoML
  answers a list of pydantic errors.

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

from conftest import script
from flightdelay.loopback import Server

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = 40
fuzz = script("fuzz")


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


@pytest.mark.xfail(strict=True, reason="defect: OpenAPI 3.0.2 document with 3.1 schema forms")
def test_openapi_document_uses_only_forms_of_its_declared_version(server: Server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    assert spec["openapi"].startswith("3.0")
    assert fuzz.to_openapi_30(spec) == spec, "exclusiveMinimum/anyOf-null need their 3.0 forms"


@pytest.mark.xfail(strict=True, reason="defect: 400 detail is a list, documented as a string")
def test_bad_request_body_matches_its_documented_schema(server: Server) -> None:
    spec = httpx.get(f"{server.url}/docs.json", timeout=30).json()
    documented = spec["components"]["schemas"]["InvalidArgument"]["properties"]["detail"]
    resp = httpx.post(f"{server.url}/predict", json=[{**GOOD, "distance": -1}], timeout=30)
    assert resp.status_code == 400
    assert documented.get("type") == type(resp.json()["detail"]).__name__.replace("str", "string")


def test_undeclared_content_type_is_refused_with_a_4xx(server: Server) -> None:
    headers = {"content-type": "multipart/form-data"}
    body = json.dumps([GOOD]).encode()
    resp = httpx.post(f"{server.url}/predict", content=body, headers=headers, timeout=30)
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert "Content-Type must be application/json" in resp.json()["error"]
