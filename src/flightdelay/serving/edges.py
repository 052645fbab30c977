"""The HTTP edges of the API, around BentoML: what it gets wrong or leaves to the application.

* ``RequestGuard``: a /predict body over the size limit is a 413 and a non-JSON one a 400,
  before anything reads it (BentoML would parse it in full, or hand it to its form parser: 500).
* ``OpenAPIDocument``: ``GET /docs.json`` in the forms of the OpenAPI version it declares, with
  the 400 body documented as sent (``corrected_document``).
* ``ClientErrorLog``: a rejected request is one WARNING line, not an ERROR with a traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the logger of BentoML's request handler (``bentoml._internal.server.http_app.log_exception``)
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


def openapi_30(node: Any) -> Any:
    """JSON Schema 2020 forms -> their OpenAPI 3.0 equivalents (``exclusiveMinimum: 0`` ->
    ``minimum: 0, exclusiveMinimum: true``; ``anyOf [X, {type: null}]`` -> ``X, nullable``).

    pydantic and BentoML write the former into a document that declares OpenAPI 3.0.2, whose
    tools (client generators, schemathesis) read only the latter."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_30(value) for key, value in node.items()}
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[plain], out[bound] = out[bound], True
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        out.pop("anyOf")
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        out["nullable"] = True
    return out


class RequestGuard:
    """Refuse a /predict body larger than the limit (413) or not JSON (400, the documented client
    error) before it is read, so a huge or odd request costs neither memory nor a 500 from
    BentoML's form parser."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def problem(self, scope: Scope) -> tuple[int, str] | None:
        """The status and message refusing this request, or None to let it through."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            return None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = headers.get("content-type", "")
        if not kind.startswith("application/json"):
            return 400, f"Content-Type must be application/json, got {kind!r}"
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return 413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.problem(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message = refused
        await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


class ClientErrorLog(logging.Filter):
    """BentoML logs each request it answers with a 400 as an ERROR with a traceback; bad input
    from a client is not a server fault. Such a record becomes one WARNING line naming the
    endpoint and the first problems; every other record passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            problems = "; ".join(
                f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
            )
            more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""  # noqa: PLR2004
            record.msg, record.args = "400 for %s [%s]: %s", (*(record.args or ()), problems + more)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def corrected_document(doc: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI document in the forms of the version it declares (``openapi_30``), with
    the 400 body's ``detail`` documented as what BentoML sends: a list of errors (or a string)."""
    fixed: dict[str, Any] = openapi_30(doc)
    schemas = fixed.get("components", {}).get("schemas", {})
    detail = schemas.get("InvalidArgument", {}).get("properties", {}).get("detail")
    if isinstance(detail, dict):
        detail.pop("type", None)
        detail["anyOf"] = [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
    return fixed


class OpenAPIDocument:
    """Serve ``GET /docs.json`` as ``corrected_document`` of what BentoML generates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        if start.get("status") == 200:  # noqa: PLR2004
            doc = corrected_document(json.loads(b"".join(body)))
            await JSONResponse(doc)(scope, receive, send)
            return
        await send(start)
        await send({"type": "http.response.body", "body": b"".join(body)})
