"""The HTTP edges of the API, around BentoML: what it gets wrong or leaves to the application.

* ``RequestGuard``: a /predict body over the size limit is a 413 and a non-JSON one a 400,
  before anything parses it (BentoML would parse it in full, or hand it to its form parser: 500);
  the refused body is drained first, so a client that sends it all before reading gets the answer.
* ``OpenAPIDocument``: ``GET /docs.json`` in the forms of the OpenAPI version it declares, with
  the 400 body documented as sent and this service's own title and description in place of
  BentoML's boilerplate (``corrected_document``).
* ``ClientErrorLog``: a rejected request is one WARNING line, not an ERROR with a traceback.

The pages a person sees (``/``, ``/docs``, ``/model-card``) are in ``serving.pages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flightdelay.serving.pages import TAG_DESCRIPTIONS, ServiceFacts, api_description
from flightdelay.serving.prediction_log import PredictionLog, from_env

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


#: a refused body is read and discarded up to this size (or for this long) before the answer,
#: so a client that sends its whole body before reading gets the 413 instead of a reset
#: connection; a larger one is answered at once and the connection closed, as nginx does
DRAIN_BYTES = 64 * 2**20
DRAIN_SECONDS = 10.0


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int) -> tuple[list[Message], bool]:
    """The request's body messages, read until its end or until more than ``limit`` bytes came.

    Returns:
        The messages read, and whether the body ended within ``limit`` bytes.
    """
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client went away
            return messages, False
        size += len(message.get("body", b""))
        if size > limit:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


async def drain(receive: Receive, limit: int, seconds: float) -> None:
    """Read and discard what is left of the body: at most ``limit`` bytes, for ``seconds``."""
    size = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while size <= limit:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
                size += len(message.get("body", b""))


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out the messages already read, then defers to ``receive``."""
    pending = list(messages)

    async def again() -> Message:
        return pending.pop(0) if pending else await receive()

    return again


class RequestGuard:
    """Refuse a /predict body larger than the limit (413) or not JSON (400, the documented client
    error) before it is parsed, so a huge or odd request costs neither memory nor a 500 from
    BentoML's form parser. A body without a declared length (chunked) is read here up to the
    limit. The refused body is drained (``drain``) before the answer, so the client reads it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, drain_bytes: int = DRAIN_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.drain_bytes = drain_bytes

    @staticmethod
    def guards(scope: Scope) -> bool:
        post = scope["type"] == "http" and scope["method"] == "POST"
        return bool(post and scope["path"] == "/predict")

    def problem(self, scope: Scope) -> tuple[int, str] | None:
        """The status and message refusing this request by its headers, or None."""
        if not self.guards(scope):
            return None
        headers = _headers(scope)
        kind = headers.get("content-type", "")
        if not kind.startswith("application/json"):
            return 400, f"Content-Type must be application/json, got {kind!r}"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, f"body of {length} bytes exceeds the limit of {self.max_body_bytes} bytes"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.problem(scope)
        if refused is None and self.guards(scope) and "content-length" not in _headers(scope):
            messages, complete = await read_body(receive, self.max_body_bytes)
            if complete:
                receive = replay(messages, receive)
            else:
                refused = 413, f"body exceeds the limit of {self.max_body_bytes} bytes"
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, message = refused
        length = _headers(scope).get("content-length", "0")
        if not length.isdigit() or int(length) <= self.drain_bytes:
            await drain(receive, self.drain_bytes, DRAIN_SECONDS)
        response = JSONResponse({"error": message}, status, headers={"connection": "close"})
        await response(scope, receive, send)


class PredictionRecorder:
    """Hand each answered /predict (status 200) to the worker's prediction log: the request's id
    (the proxy's X-Request-ID, else a new one), its body and the answer's, captured as they pass,
    neither decoded nor encoded again. The log is written after the answer has gone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._log: PredictionLog | None = None
        self._made = False

    def prediction_log(self) -> PredictionLog | None:
        """This worker's log, made on its first request (the worker's index is known by then)."""
        if not self._made:
            import bentoml  # noqa: PLC0415 - the worker's index

            self._log = from_env(str(bentoml.server_context.worker_index or os.getpid()))
            self._made = True
        return self._log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.prediction_log() if RequestGuard.guards(scope) else None
        if found is None:
            await self.app(scope, receive, send)
            return
        request: list[bytes] = []
        response: list[bytes] = []
        answered = [False]

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                request.append(message.get("body", b""))
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                encoded = any(
                    k.lower() == b"content-encoding" for k, _ in message.get("headers", [])
                )
                answered[0] = message["status"] == 200 and not encoded  # noqa: PLR2004
            elif message["type"] == "http.response.body" and answered[0]:
                response.append(message.get("body", b""))
            await send(message)

        await self.app(scope, recording_receive, recording_send)
        if answered[0]:
            request_id = _headers(scope).get("x-request-id") or uuid.uuid4().hex
            found.record(request_id, b"".join(request), b"".join(response))


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


def corrected_document(doc: dict[str, Any], about: ServiceFacts | None = None) -> dict[str, Any]:
    """BentoML's OpenAPI document in the forms of the version it declares (``openapi_30``), with
    the 400 body's ``detail`` documented as what BentoML sends: a list of errors (or a string).

    Args:
        doc: the document BentoML generates.
        about: the served model and limits: the ``info`` becomes this service's (title naming
            the model version, ``api_description``) instead of BentoML's readme with badges
            and its team as the contact; None keeps BentoML's, without the contact.
    """
    fixed: dict[str, Any] = openapi_30(doc)
    schemas = fixed.get("components", {}).get("schemas", {})
    detail = schemas.get("InvalidArgument", {}).get("properties", {}).get("detail")
    if isinstance(detail, dict):
        detail.pop("type", None)
        detail["anyOf"] = [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]
    if about is None:
        fixed.get("info", {}).pop("contact", None)
        return fixed
    fixed["info"] = {
        "title": f"{about.name} API, model {about.model_version}",
        "version": about.release or about.model_version,
        "description": api_description(about),
    }
    for tag in fixed.get("tags", []):
        tag["description"] = TAG_DESCRIPTIONS.get(tag.get("name"), tag.get("description"))
    return fixed


def _no_facts() -> ServiceFacts | None:
    return None


class OpenAPIDocument:
    """Serve ``GET /docs.json`` as ``corrected_document`` of what BentoML generates.

    Args:
        app: the application.
        about: called per request: the facts of the served model (None outside a server).
    """

    def __init__(self, app: ASGIApp, about: Callable[[], ServiceFacts | None] = _no_facts) -> None:
        self.app = app
        self.about = about

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
            doc = corrected_document(json.loads(b"".join(body)), self.about())
            await JSONResponse(doc)(scope, receive, send)
            return
        await send(start)
        await send({"type": "http.response.body", "body": b"".join(body)})
