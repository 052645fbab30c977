"""The API's pages in a real browser: headless Chromium (Debian's package) driven by playwright,
against `bentoml serve` of the session's Bento on loopback.

Each page must show this service (its title, the served model's version, its airports) and load
nothing from outside: every request a page makes is recorded and must stay on 127.0.0.1.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from bento_helpers import Server
from reliability_helpers import shared_server

from conftest import unavailable

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # the dev dependency group is not installed
    sync_playwright = None

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)
CHROMIUM = "chromium"  # /usr/bin/chromium of Debian's package


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which(CHROMIUM)
    if sync_playwright is None:
        unavailable("playwright is not installed: uv sync (it is a dev dependency)")
    if executable is None:
        unavailable("no chromium on PATH: apt-get install -y chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, small_repo: Path, browser: Browser) -> Server:
    return shared_server(request, small_repo, "default")


@pytest.fixture(scope="module")
def metadata(server: Server) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{server.url}/metadata", timeout=10).json()
    return answer


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the URL of every request it makes."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    requests: list[str] = []
    opened.on("request", lambda r: requests.append(r.url))
    yield opened, requests
    context.close()


def visit(page: Page, url: str, shot: Path) -> None:
    """Load ``url`` until the network is idle and keep a full-page screenshot."""
    answer = page.goto(url, wait_until="networkidle")
    assert answer is not None
    assert answer.status == 200, url
    page.screenshot(path=str(shot), full_page=True)
    log.warning("screenshot of %s: %s", url, shot)


def assert_loopback_only(requests: list[str]) -> None:
    assert requests
    assert {urlsplit(url).hostname for url in requests} == {"127.0.0.1"}, requests


def test_the_service_page(
    server: Server, metadata: dict[str, Any], page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    tab, requests = page
    visit(tab, f"{server.url}/", tmp_path / "page.png")
    version = metadata["model_version"]
    assert tab.title() == f"flight-delay {version}"
    assert tab.locator("#model-version").inner_text() == version
    shown = tab.locator("#airports").inner_text()
    assert all(code in shown for code in ("EWR", "JFK", "LGA")), shown
    assert "BentoML" not in tab.content()
    for href in ("model-card", "docs", "docs.json"):
        assert tab.locator(f'main a[href="{href}"], nav a[href="{href}"]').count() >= 1, href
    assert_loopback_only(requests)


def test_the_model_card(
    server: Server, metadata: dict[str, Any], page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    tab, requests = page
    visit(tab, f"{server.url}/model-card", tmp_path / "card.png")
    assert tab.title() == f"Model card: {metadata['model']}"
    headings = tab.locator("main h2").all_inner_texts()
    assert headings[0] == "Intended use"
    assert {"Slices", "Calibration", "Decision threshold", "Known limitations"} <= set(headings)
    assert "EWR, JFK and LGA" in tab.locator("main").inner_text()
    assert_loopback_only(requests)
    markdown = httpx.get(f"{server.url}/model-card.md", timeout=10)
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"# Model card: {metadata['model']}\n")


def test_the_api_reference(
    server: Server, metadata: dict[str, Any], page: tuple[Page, list[str]], tmp_path: Path
) -> None:
    tab, requests = page
    visit(tab, f"{server.url}/docs", tmp_path / "docs.png")
    title = tab.locator(".swagger-ui .info .title").inner_text()
    assert f"model {metadata['model_version']}" in title
    description = tab.locator(".swagger-ui .info .description").inner_text()
    assert "EWR, JFK and LGA" in description
    assert "BentoML" not in description
    assert tab.locator(".opblock-summary-path", has_text="/predict").count() == 1
    assert_loopback_only(requests)
