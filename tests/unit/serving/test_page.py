"""The service's pages: ``/``, ``/docs``, ``/model-card`` and the OpenAPI document's info."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from _bentoml_sdk.service import set_current_service
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from flightdelay.contract.names import CARD_FILES
from flightdelay.contract.schema import Flight
from flightdelay.serving.edges import OpenAPIDocument, corrected_document
from flightdelay.serving.pages import (
    STYLE,
    SWAGGER,
    ServiceFacts,
    card_response,
    docs_page,
    index_page,
    read_cards,
)
from flightdelay.serving.service import metadata_app

EXAMPLE = Flight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
FACTS = ServiceFacts(
    name="flight-delay",
    model_version="1.2.3-abc1234-0123abcd",
    release="1.2.3",
    threshold=0.35,
    metrics={"test.roc_auc": 0.70871, "test.brier": 0.1694, "test.rows": 53991.0},
    origins=("EWR", "JFK", "LGA"),
    carriers=16,
    destinations=103,
    max_flights=1000,
    max_body_bytes=2 * 2**20,
    max_concurrency=256,
    example=EXAMPLE,
    answer=[{"probability": 0.4, "delayed": True, "model_version": "1.2.3-abc1234-0123abcd"}],
)
#: BentoML's document, as far as the correction touches it
BENTOML_DOC = {
    "openapi": "3.0.2",
    "info": {
        "title": "flight-delay",
        "version": "None",
        "description": "# flight-delay:dev\n\n[![pypi_status](https://img.shields.io/badge/x)]"
        "\n\nThis is a Machine Learning Service created with BentoML.",
        "contact": {"name": "BentoML Team", "email": "contact@bentoml.com"},
    },
    "tags": [{"name": "Service APIs", "description": "BentoML Service API endpoints."}],
    "paths": {},
}


def external_references(page: str) -> list[str]:
    """Every src/href of a page that leaves the origin (an absolute or scheme-relative URL)."""
    return re.findall(r'(?:src|href)="((?:[a-z][a-z0-9+.-]*:)?//[^"]*)"', page, flags=re.I)


def get(app: Any, path: str) -> httpx.Response:
    """``GET path`` of an ASGI app, in process."""

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(path)

    return asyncio.run(ask())


def csp_hash(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def test_index_page_says_what_for_which_airports_with_which_model() -> None:
    page = index_page(FACTS, "http://127.0.0.1:3000/")
    assert "<title>flight-delay 1.2.3-abc1234-0123abcd</title>" in page
    assert '<code id="model-version">1.2.3-abc1234-0123abcd</code>' in page
    assert "EWR (Newark Liberty), JFK (John F. Kennedy), LGA (LaGuardia)" in page
    assert "out of EWR, JFK and LGA" in page
    assert "probability of arriving 15+ min late" in page
    assert '<td class="n">0.7087</td>' in page  # test ROC AUC
    assert "On 53,991 flights" not in page  # no delayed rate: no sentence built on it


def test_index_page_lists_the_limits_and_what_lies_beyond() -> None:
    page = index_page(FACTS, "http://127.0.0.1:3000/")
    assert "1,000 flights per request" in page
    assert "request body of 2 MiB (2,097,152 bytes)" in page
    assert "256 requests in progress at once" in page
    for env in (
        "FLIGHTDELAY_MAX_FLIGHTS",
        "FLIGHTDELAY_MAX_BODY_BYTES",
        "FLIGHTDELAY_MAX_CONCURRENCY",
    ):
        assert f"<code>{env}</code>" in page
    assert "413, before the body is parsed" in page
    assert "429 at once" in page


def test_index_page_has_a_runnable_example_and_the_answer_shape() -> None:
    page = index_page(FACTS, "http://127.0.0.1:3000/")
    example = re.search(r'<pre id="example">(.*?)</pre>', page, flags=re.S)
    assert example is not None
    command = example.group(1).replace("&#x27;", "'").replace("&quot;", '"')
    assert command.startswith("curl -sS -X POST http://127.0.0.1:3000/predict")
    body = re.search(r"-d '(.*)'$", command)
    assert body is not None
    assert json.loads(body.group(1)) == [EXAMPLE]
    assert "&quot;probability&quot;: 0.4" in page
    for field in ("probability", "delayed", "model_version"):
        assert f"<code>{field}</code>" in page


def test_index_page_links_the_other_pages_and_loads_nothing() -> None:
    page = index_page(FACTS, "http://127.0.0.1:3000/")
    for href in ("model-card", "docs", "docs.json", "metadata"):
        assert f'href="{href}"' in page
    assert external_references(page) == []
    assert "<script" not in page
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None
    assert "default-src 'none'" in policy.group(1)
    assert f"style-src {csp_hash(STYLE)}" in policy.group(1)  # the inline style, nothing else


def test_every_value_on_the_page_is_escaped() -> None:
    hostile = replace(FACTS, model_version="<script>x</script>", origins=("<i>",), release="&")
    page = index_page(hostile, "http://h/'><b>/")
    assert "<script>x" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<i>" not in page
    assert "<b>" not in page


def test_docs_page_is_swagger_ui_on_local_assets() -> None:
    page = docs_page(FACTS)
    assert "<title>flight-delay 1.2.3-abc1234-0123abcd: API reference</title>" in page
    assert '<script src="static_content/swagger-ui-bundle.js">' in page
    assert '<link rel="stylesheet" href="static_content/swagger-ui.css">' in page
    assert external_references(page) == []
    assert "validatorUrl: null" in SWAGGER  # the validator badge would be fetched from outside
    assert f"script-src 'self' {csp_hash(SWAGGER)}" in page
    assert "googletagmanager" not in page


def test_the_openapi_info_is_this_services() -> None:
    info = corrected_document(BENTOML_DOC, FACTS)["info"]
    assert info["title"] == "flight-delay API, model 1.2.3-abc1234-0123abcd"
    assert info["version"] == "1.2.3"
    assert "contact" not in info
    assert "BentoML" not in info["description"]
    assert "http" not in info["description"]  # no badges
    assert "out of EWR, JFK and LGA" in info["description"]
    assert "`FLIGHTDELAY_MAX_BODY_BYTES`" in info["description"]
    assert "[Model card](model-card)" in info["description"]
    tags = corrected_document(BENTOML_DOC, FACTS)["tags"]
    assert tags == [{"name": "Service APIs", "description": "The predictions of the served model."}]


def test_without_the_service_the_info_only_loses_bentomls_contact() -> None:
    info = corrected_document(BENTOML_DOC)["info"]
    assert "contact" not in info
    assert info["title"] == "flight-delay"


def test_the_document_middleware_asks_for_the_facts_per_request() -> None:
    async def doc(_: object) -> JSONResponse:
        return JSONResponse(BENTOML_DOC)

    app = OpenAPIDocument(Starlette(routes=[Route("/docs.json", doc)]), about=lambda: FACTS)
    info = get(app, "/docs.json").json()["info"]
    assert info["version"] == "1.2.3"


def test_read_cards_finds_each_format_present(tmp_path: Path) -> None:
    assert read_cards(tmp_path) == {}
    (tmp_path / CARD_FILES["md"]).write_text("# card\n", "utf-8")
    assert read_cards(tmp_path) == {"md": "# card\n"}


def test_card_response_by_format_and_the_errors() -> None:
    cards = {"html": "<p>card</p>", "md": "# card"}
    html = card_response(cards, "html", "m:1")
    assert (html.status_code, html.media_type) == (200, "text/html; charset=utf-8")
    assert card_response(cards, "md", "m:1").media_type == "text/markdown; charset=utf-8"
    wrong = card_response(cards, "pdf", "m:1")
    assert wrong.status_code == 400
    assert json.loads(bytes(wrong.body)) == {"error": "format must be one of html, md, got 'pdf'"}
    missing = card_response({}, "html", "m:1")
    assert missing.status_code == 404
    assert "model m:1 has no model card" in json.loads(bytes(missing.body))["error"]


@pytest.fixture
def served() -> Iterator[None]:
    """A stand-in for the running service that the routes of ``metadata_app`` ask for."""
    cards = {"html": "<p>the card</p>", "md": "# the card"}
    set_current_service(SimpleNamespace(facts=FACTS, cards=cards, metadata={"model": "m:1"}))
    yield
    set_current_service(None)


@pytest.mark.parametrize(
    ("path", "kind", "text"),
    [
        ("/", "text/html", 'id="model-version">1.2.3-abc1234-0123abcd<'),
        ("/docs", "text/html", "swagger-ui-bundle.js"),
        ("/model-card", "text/html", "<p>the card</p>"),
        ("/model-card?format=md", "text/markdown", "# the card"),
        ("/model-card.md", "text/markdown", "# the card"),
    ],
)
@pytest.mark.usefixtures("served")
def test_the_routes(path: str, kind: str, text: str) -> None:
    answer = get(metadata_app, path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(kind)
    assert text in answer.text


@pytest.mark.usefixtures("served")
def test_a_model_without_a_card_is_a_readable_404() -> None:
    set_current_service(SimpleNamespace(facts=FACTS, cards={}, metadata={"model": "m:0"}))
    answer = get(metadata_app, "/model-card")
    assert answer.status_code == 404
    assert answer.json()["error"].startswith("model m:0 has no model card")
    assert get(metadata_app, "/").status_code == 200  # the rest keeps serving
