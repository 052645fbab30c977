"""The pages the service shows a person, in place of BentoML's boilerplate.

``/`` is ``index_page``: what this service predicts, for which airports, with which model and
limits, and an example; ``/docs`` is ``docs_page``: the Swagger UI on BentoML's local assets;
``/model-card`` is ``card_response``: the model card that release writes beside the model
(``contract.names.CARD_FILES``). ``ServiceFacts`` holds what they say, and
``api_description`` is the OpenAPI document's description (``edges.corrected_document``). Every
page is self-contained: its Content-Security-Policy lets it load nothing from elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse, Response

from flightdelay.contract.names import CARD_FILES
from flightdelay.contract.schema import Prediction

#: BentoML's tags of the paths, described for this service
TAG_DESCRIPTIONS = {
    "Service APIs": "The predictions of the served model.",
    "Infrastructure": "Probes and Prometheus metrics.",
}
CARD_TYPES = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8"}
#: the airports the model may know, by FAA code (the page names those of the served model)
AIRPORT_NAMES = {"EWR": "Newark Liberty", "JFK": "John F. Kennedy", "LGA": "LaGuardia"}
#: how the metrics of evaluate.json are called on the pages (by the last part of their key)
METRIC_LABELS = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC (average precision)",
    "brier": "Brier score",
    "log_loss": "log loss",
    "f1": "F1",
    "precision": "precision",
    "recall": "recall",
    "delayed_rate": "delayed rate",
    "rows": "flights",
}
#: the headline test metrics, in the order the pages list them
SCORES = ("roc_auc", "pr_auc", "brier", "log_loss", "f1", "precision", "recall")
WHAT = Prediction.model_fields["probability"].description or "probability of a delay"
#: what the answer's fields mean, where the contract leaves it unsaid
FIELD_NOTES = {"model_version": "the served model's version, as /metadata's model_version"}


@dataclass(frozen=True)
class ServiceFacts:
    """What the service's pages and OpenAPI document say: the served model and the limits.

    Attributes:
        metrics: the model's headline metrics (``test.*``, ``dummy.roc_auc``), as /metadata.
        origins: the departure airports the model knows (its ``origin`` categories).
        example: one request flight (the contract's example); answer: the model's answer to it.
    """

    name: str
    model_version: str
    release: str | None
    threshold: float
    metrics: Mapping[str, float]
    origins: tuple[str, ...]
    carriers: int
    destinations: int
    max_flights: int
    max_body_bytes: int
    max_concurrency: int
    example: Mapping[str, Any]
    answer: Sequence[Mapping[str, Any]] | None = None


def metric_label(key: str) -> str:
    """``test.roc_auc`` -> ``ROC AUC``; an unknown metric keeps its name."""
    name = key.rsplit(".", 1)[-1]
    return METRIC_LABELS.get(name, name)


def figure(key: str, value: float) -> str:
    """A metric as shown: counts with thousands separators, rates in %, scores to 4 places."""
    name = key.rsplit(".", 1)[-1]
    if name == "rows":
        return f"{int(value):,}"
    if name == "delayed_rate":
        return f"{100 * value:.1f} %"
    return f"{value:.4f}"


def binary_size(n: int) -> str:
    """``2097152`` -> ``2 MiB (2,097,152 bytes)``."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def airports(codes: Sequence[str]) -> str:
    """``EWR, JFK and LGA``."""
    return ", ".join(codes[:-1]) + f" and {codes[-1]}" if len(codes) > 1 else "".join(codes)


def lead(facts: ServiceFacts) -> str:
    """The one sentence that says what the service answers."""
    return (
        f"For each scheduled flight out of {airports(facts.origins)} (New York): the {WHAT}, "
        f"and the label delayed when it is at least the model's threshold "
        f"{facts.threshold:g}."
    )


def limits(facts: ServiceFacts) -> list[tuple[str, str, str]]:
    """The request limits: (limit, the variable that sets it, what happens beyond)."""
    return [
        (
            f"{facts.max_flights:,} flights per request",
            "FLIGHTDELAY_MAX_FLIGHTS",
            "400, like any invalid request",
        ),
        (
            f"request body of {binary_size(facts.max_body_bytes)}",
            "FLIGHTDELAY_MAX_BODY_BYTES",
            "413, before the body is parsed",
        ),
        (
            f"{facts.max_concurrency:,} requests in progress at once",
            "FLIGHTDELAY_MAX_CONCURRENCY",
            "429 at once: retry later",
        ),
    ]


def api_description(facts: ServiceFacts) -> str:
    """The OpenAPI ``info.description`` (markdown): what, which model, the limits, the links."""
    auc = facts.metrics.get("test.roc_auc")
    model = f"Model `{facts.model_version}`"
    model += "." if auc is None else f", test ROC AUC {auc:.4f}."
    rules = [
        f"* {what}, set by `{env}`; beyond it: {beyond}" for what, env, beyond in limits(facts)
    ]
    links = "[Service page](./) · [Model card](model-card) · [OpenAPI document](docs.json)"
    return "\n\n".join([lead(facts), model, "Limits:\n\n" + "\n".join(rules), links])


STYLE = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;
background:#f7f8fa}
main{max-width:54rem;margin:0 auto;padding:1.5rem 1.25rem 3rem}
nav.bar{background:#1d3557;padding:.6rem 1.25rem;font-size:.95rem}
nav.bar a{color:#fff;margin-right:1.25rem;text-decoration:none}
nav.bar a:hover{text-decoration:underline}
main h1{font-size:1.8rem;margin:.5rem 0 .25rem}
main h2{font-size:1.25rem;margin:2rem 0 .5rem;border-bottom:1px solid #d8dde3;padding-bottom:.2rem}
main h3{font-size:1.05rem;margin:1.2rem 0 .4rem}main p.lead{font-size:1.1rem;color:#334}
main table{border-collapse:collapse;margin:.5rem 0;background:#fff}
main th,main td{border:1px solid #d8dde3;padding:.3rem .65rem;text-align:left;vertical-align:top}
main th{background:#eef1f5}main .n{text-align:right;font-variant-numeric:tabular-nums}
main code,main pre{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:#eef1f5;border-radius:3px}main code{padding:.05rem .3rem}
main pre{padding:.75rem 1rem;white-space:pre-wrap;overflow-wrap:anywhere;border:1px solid #d8dde3}
main pre code{padding:0}main a{color:#1d5fa8}
"""


CODE_SPAN = re.compile(r"`([^`]+)`")
NUMBER = re.compile(r"[+-]?[\d,]+(\.\d+)?( %)?")  # a figure: aligned right in tables


def _source_hash(text: str) -> str:
    """The CSP source that allows exactly this inline script or style."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def _policy(same_origin: bool, script: str) -> str:
    """The Content-Security-Policy of a page: its own style and script, same-origin assets."""
    own = ["'self'"] if same_origin else []
    directives = {
        "default-src": ["'none'"],
        "style-src": [*own, _source_hash(STYLE)],
        "img-src": [*own, "data:"],
        "script-src": [*own, *([_source_hash(script)] if script else [])] or ["'none'"],
        "connect-src": own or ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def page(title: str, body: str, *, assets: Sequence[str] = (), script: str = "") -> str:
    """A whole HTML page whose Content-Security-Policy lets it load nothing from elsewhere.

    Args:
        title: the title (escaped here).
        body: the body's HTML, values already escaped.
        assets: same-origin stylesheets (``.css``) and scripts (``.js``), by relative URL.
        script: one inline script, allowed by its hash.
    """
    links = [
        f'<link rel="stylesheet" href="{html.escape(a)}">' for a in assets if a.endswith(".css")
    ]
    scripts = [f'<script src="{html.escape(a)}"></script>' for a in assets if a.endswith(".js")]
    policy = _policy(bool(assets), script)
    return "\n".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<title>{html.escape(title)}</title><link rel="icon" href="data:,">',
            f"<style>{STYLE}</style>",
            *links,
            f"</head><body>\n{body}",
            *scripts,
            *([f"<script>{script}</script>"] if script else []),
            "</body></html>\n",
        ]
    )


def inline_html(text: str) -> str:
    """Text with `code` spans as HTML: escaped, the spans as ``<code>``."""
    return CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], cell: Callable[[str], str] = inline_html
) -> str:
    """A table, each cell through ``cell`` (``inline_html`` by default); numbers aligned right."""

    def row(tag: str, cells: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="n">{cell(c)}</{tag}>' if _numeric(c) else f"<{tag}>{cell(c)}</{tag}>"
            for c in cells
        )

    body = "".join(f"<tr>{row('td', r)}</tr>" for r in rows)
    return f"<table><thead><tr>{row('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _numeric(text: str) -> bool:
    return NUMBER.fullmatch(text) is not None


#: the links of every page of the service, relative so that they hold behind a path prefix
NAV = (
    ("./", "Service"),
    ("docs", "API reference"),
    ("docs.json", "OpenAPI document"),
    ("model-card", "Model card"),
    ("metadata", "Metadata (JSON)"),
)


def nav_bar() -> str:
    """The bar of links to the service's pages."""
    links = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for href, text in NAV)
    return f'<nav class="bar">{links}</nav>'


def _model_section(facts: ServiceFacts) -> str:
    known = [f"{c} ({AIRPORT_NAMES[c]})" if c in AIRPORT_NAMES else c for c in facts.origins]
    about = [
        ("model version", f'<code id="model-version">{html.escape(facts.model_version)}</code>'),
        ("release", html.escape(facts.release or "unknown")),
        ("decision threshold", f"{facts.threshold:g}"),
        ("departure airports", f'<span id="airports">{html.escape(", ".join(known))}</span>'),
        ("known by the model", f"{facts.carriers:,} carriers, {facts.destinations:,} destinations"),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in about)
    m = facts.metrics
    scores = [(metric_label(n), figure(n, m[f"test.{n}"])) for n in SCORES if f"test.{n}" in m]
    test = "On the flights of the held-out test months"
    if "test.rows" in m and "test.delayed_rate" in m:
        test = f"On {figure('rows', m['test.rows'])} flights of the held-out test months, "
        test += f"{figure('delayed_rate', m['test.delayed_rate'])} of them delayed"
    if "dummy.roc_auc" in m:
        test += f"; a dummy that predicts the delay rate has ROC AUC {m['dummy.roc_auc']:.4f}"
    return (
        f"<h2>Model</h2><table>{rows}</table><h3>Test metrics</h3><p>{html.escape(test)}. "
        'Slices and calibration: the <a href="model-card">model card</a>.</p>'
        + html_table(("metric", "value"), scores)
    )


def _limits_section(facts: ServiceFacts) -> str:
    rows = [(what, f"`{env}`", beyond) for what, env, beyond in limits(facts)]
    return (
        "<h2>Request limits</h2><p><code>POST /predict</code> takes a JSON list of flights "
        "(<code>Content-Type: application/json</code>); an invalid one is a 400 whose "
        "<code>detail</code> names each problem by its position and field.</p>"
        + html_table(("limit", "set by", "beyond it"), rows)
    )


def _example_section(facts: ServiceFacts, base_url: str) -> str:
    body = json.dumps([dict(facts.example)])
    curl = (
        f"curl -sS -X POST {shlex.quote(base_url.rstrip('/') + '/predict')} \\\n"
        f"  -H 'Content-Type: application/json' \\\n  -d {shlex.quote(body)}"
    )
    fields = [
        (f"`{name}`", field.description or FIELD_NOTES.get(name, ""))
        for name, field in Prediction.model_fields.items()
    ]
    answer = ""
    if facts.answer:
        shown = html.escape(json.dumps(list(facts.answer), indent=2))
        answer = f"<p>This model's answer to it:</p><pre>{shown}</pre>"
    return (
        f'<h2>Example</h2><pre id="example">{html.escape(curl)}</pre>{answer}'
        "<p>The answer is a JSON list: one object per flight, in the order of the request.</p>"
        + html_table(("field", "meaning"), fields)
    )


def index_page(facts: ServiceFacts, base_url: str) -> str:
    """The service's page at ``/``: what it predicts, the model, the limits, an example.

    Args:
        facts: the served model and the limits.
        base_url: the URL the client reached the service at (for the example command).
    """
    body = "".join(
        [
            nav_bar(),
            f"<main><h1>{html.escape(facts.name)}</h1>",
            f'<p class="lead">{html.escape(lead(facts))}</p>',
            _model_section(facts),
            _limits_section(facts),
            _example_section(facts, base_url),
            "<h2>Also</h2><p>Probes <code>/livez</code>, <code>/readyz</code>; Prometheus "
            "metrics at <code>/metrics</code>.</p></main>",
        ]
    )
    return page(f"{facts.name} {facts.model_version}", body)


#: Swagger UI, on the assets BentoML serves locally; no validator badge (an external request)
SWAGGER = (
    'window.ui = SwaggerUIBundle({url: "docs.json", dom_id: "#swagger-ui", deepLinking: true, '
    'validatorUrl: null, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"});'
)
SWAGGER_ASSETS = ("static_content/swagger-ui.css", "static_content/swagger-ui-bundle.js")


def docs_page(facts: ServiceFacts) -> str:
    """The interactive API reference at ``/docs``: Swagger UI of ``/docs.json``."""
    body = f'{nav_bar()}<div id="swagger-ui"></div>'
    title = f"{facts.name} {facts.model_version}: API reference"
    return page(title, body, assets=SWAGGER_ASSETS, script=SWAGGER)


def read_cards(directory: str | Path) -> dict[str, str]:
    """The model card files in a model directory, by format (none for a model without a card)."""
    found = {}
    for fmt, name in CARD_FILES.items():
        path = Path(directory) / name
        if path.is_file():
            found[fmt] = path.read_text("utf-8")
    return found


def card_response(cards: Mapping[str, str], fmt: str, model: str) -> Response:
    """The model card in ``fmt`` (``html`` or ``md``), or a JSON error: 400 for another format,
    404 when the served model was imported without a card."""
    if fmt not in CARD_FILES:
        known = ", ".join(CARD_FILES)
        return JSONResponse({"error": f"format must be one of {known}, got {fmt!r}"}, 400)
    if fmt not in cards:
        message = f"model {model} has no model card: it was imported without one (make bento)"
        return JSONResponse({"error": message}, 404)
    return Response(cards[fmt], media_type=CARD_TYPES[fmt])
