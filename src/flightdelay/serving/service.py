"""The BentoML HTTP API: ``POST /predict``, ``GET /metadata`` and the service's pages.

Pages (``serving.edges``): ``/`` says what the service predicts, with which model and limits;
``/docs`` is the interactive API reference (Swagger UI of ``/docs.json``); ``/model-card`` is
the model card release wrote beside the model (``?format=md`` or ``/model-card.md``: markdown).
They are routes of the Starlette app mounted at ``/``, which BentoML matches before its own
index page.

Thin on purpose: the request is the pydantic ``Flight`` contract, predictions go through
``serving.runtime.ServingModel`` (the compiled path benchmark measures), the answer is
``Prediction``. The model, its decision threshold and its metadata come from the BentoML model
``flight-delay-model`` that ``flightdelay.ops.release`` imports.

Environment (read when the service class is defined, i.e. at ``bentoml serve`` start):
``FLIGHTDELAY_MODEL_TAG`` (default ``flight-delay-model:latest``), ``FLIGHTDELAY_MAX_FLIGHTS``
(flights per request, default 1000), ``FLIGHTDELAY_MAX_BODY_BYTES`` (request body limit, default
2 MiB: larger bodies get a 413 before anything is parsed), ``FLIGHTDELAY_MAX_CONCURRENCY``
(requests in progress at once, default 256, shared out over the workers: one more gets a 429 at
once instead of a place in an ever longer queue), ``FLIGHTDELAY_WORKERS`` (server processes,
default 2: one per core of the reference machine; each holds its own copy of the served model,
about 150 MB RSS), ``FLIGHTDELAY_TREE_THREADS`` (threads a worker's trees may use on a request
of 64 flights or more, default 2: they do not spin, so a busy worker takes the core an idle one
leaves, as when most connections land on one worker),
``FLIGHTDELAY_ACCESS_LOG`` (``1`` turns the per-request access log on; it costs about a quarter
of the throughput).

Importing this module loads BentoML and pydantic only: ``bentoml serve`` imports it in its
supervising process too. The worker that serves loads, in ``FlightDelay.__init__``, the compiled
``serving.runtime.ServingModel`` that ``flightdelay.ops.release`` saved beside the Pipeline
(numpy and onnxruntime; no scikit-learn, scipy, pandas or pyarrow); release refuses a model
that cannot be compiled, so every Bento has one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import bentoml
from _bentoml_sdk.io_models import IORootModel  # type: ignore[import-untyped]
from bentoml.exceptions import BentoMLException
from pydantic import AfterValidator, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from flightdelay.contract.names import BENTO_NAME, MODEL_NAME
from flightdelay.contract.schema import CATEGORICAL, Flight, Prediction
from flightdelay.serving.edges import (
    BENTOML_REQUEST_LOGGER,
    ClientErrorLog,
    OpenAPIDocument,
    PredictionRecorder,
    RequestGuard,
)
from flightdelay.serving.pages import (
    ServiceFacts,
    card_response,
    docs_page,
    index_page,
    read_cards,
)

log = logging.getLogger(__name__)

KIND = {"carrier": "carrier", "origin": "airport", "dest": "airport"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: expected a positive integer, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {raw!r}")
    return value


MAX_FLIGHTS = _env_int("FLIGHTDELAY_MAX_FLIGHTS", 1000)
MAX_BODY_BYTES = _env_int("FLIGHTDELAY_MAX_BODY_BYTES", 2 * 2**20)
MAX_CONCURRENCY = _env_int("FLIGHTDELAY_MAX_CONCURRENCY", 256)
WORKERS = _env_int("FLIGHTDELAY_WORKERS", 2)
TREE_THREADS = _env_int("FLIGHTDELAY_TREE_THREADS", 2)
ACCESS_LOG = os.environ.get("FLIGHTDELAY_ACCESS_LOG", "0").lower() in {"1", "true", "yes"}


def unknown_codes(
    flights: Sequence[Flight], categories: Mapping[str, Mapping[Any, int]]
) -> list[str]:
    """One message per carrier/airport code the fitted model has never seen.

    Args:
        flights: validated flights of one request.
        categories: ``FlightFeatures.categories_`` of the fitted model (column -> code table).

    Returns:
        Messages like ``[2].origin: unknown airport code 'XYZ'``; empty when all are known.
    """
    problems = []
    for i, flight in enumerate(flights):
        for col in CATEGORICAL:
            value = getattr(flight, col)
            if value not in categories.get(col, {}):
                problems.append(f"[{i}].{col}: unknown {KIND[col]} code {value!r}")
    return problems


def _known_codes_only(flights: list[Flight]) -> list[Flight]:
    """Reject codes the served model does not know (skipped outside a running server)."""
    try:
        service = bentoml.get_current_service()
    except BentoMLException:
        return flights
    problems = unknown_codes(flights, service.categories)
    if problems:
        raise ValueError("; ".join(problems))
    return flights


Flights = Annotated[
    list[Flight],
    Field(min_length=1, max_length=MAX_FLIGHTS, description="flights to score, in order"),
    AfterValidator(_known_codes_only),
]


def _rooted(error: ErrorDetails) -> InitErrorDetails:
    """An error of the flight list, addressed as in the request model: ``root``, index, field."""
    rooted: InitErrorDetails = {
        "type": error["type"],
        "loc": ("root", *error["loc"]),
        "input": error["input"],
    }
    if "ctx" in error:
        rooted["ctx"] = error["ctx"]
    return rooted


class FlightsInput(IORootModel[Flights]):  # type: ignore[misc]
    """The request body of ``/predict``: a JSON list of flights.

    Three changes to BentoML's default root input: the body is parsed and validated in one pass by
    pydantic's JSON validator (BentoML runs ``json.loads`` and then validates the Python objects,
    twice the time); malformed JSON is a validation error (a 400 naming the position) rather than
    a 500; the JSON schema is computed once, not per request. The schema's ``examples`` lists
    become OpenAPI 3.0 ``example`` values, which BentoML's OpenAPI model requires.
    """

    __root_input__ = True
    media_type = "application/json"

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
        try:
            flights = _FLIGHTS.validate_json(json_data)
        except ValidationError as exc:
            errors = exc.errors()
            if any(e["type"] == "json_invalid" for e in errors):
                raise _malformed(cls.__name__, json_data) from exc
            raise ValidationError.from_exception_data(
                cls.__name__, [_rooted(e) for e in errors]
            ) from None
        return cls.model_construct(root=flights)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema: dict[str, Any] = super().model_json_schema(*args, **kwargs)
        for definition in schema.get("$defs", {}).values():
            if definition.get("examples"):
                definition["example"] = definition.pop("examples")[0]
        return schema


def _malformed(title: str, json_data: str | bytes | bytearray) -> ValidationError:
    """The ``json_invalid`` error at ``body``, with the standard library's message and position."""
    try:
        json.loads(json_data)
        message = "invalid JSON"
    except (ValueError, RecursionError) as exc:  # bad/undecodable JSON, too deeply nested
        message = str(exc)
    line: InitErrorDetails = {
        "type": "json_invalid",
        "loc": ("body",),
        "input": "",
        "ctx": {"error": message},
    }
    return ValidationError.from_exception_data(title, [line])


_FLIGHTS: TypeAdapter[list[Flight]] = TypeAdapter(Flights)


class PredictionsOutput(IORootModel[list[Prediction]]):  # type: ignore[misc]
    """The response body of ``/predict``, written by pydantic's JSON serializer in one call
    (BentoML's default dumps every answer to a dict, then through ``json.dumps``)."""

    media_type = "application/json"

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:  # noqa: ARG003
        answers = obj.root if isinstance(obj, IORootModel) else obj
        return Response(_PREDICTIONS.dump_json(answers), media_type=cls.media_type)


_PREDICTIONS: TypeAdapter[list[Prediction]] = TypeAdapter(list[Prediction])


async def _metadata(_: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(service.metadata)


async def _index(request: Request) -> HTMLResponse:
    return HTMLResponse(index_page(bentoml.get_current_service().facts, str(request.base_url)))


async def _docs(_: Request) -> HTMLResponse:
    return HTMLResponse(docs_page(bentoml.get_current_service().facts))


async def _model_card(request: Request) -> Response:
    service = bentoml.get_current_service()
    markdown = request.url.path.endswith(".md")
    fmt = "md" if markdown else request.query_params.get("format", "html")
    return card_response(service.cards, fmt, service.metadata["model"])


def _served_facts() -> ServiceFacts | None:
    """The facts of the service this worker runs (None before it is instantiated)."""
    try:
        facts: ServiceFacts = bentoml.get_current_service().facts
    except BentoMLException:
        return None
    return facts


metadata_app = Starlette(
    routes=[
        Route("/metadata", _metadata, methods=["GET"]),
        Route("/", _index, methods=["GET"]),
        Route("/docs", _docs, methods=["GET"]),
        Route("/model-card", _model_card, methods=["GET"]),
        Route("/model-card.md", _model_card, methods=["GET"]),
    ]
)


def check_signature(model_dir: Path) -> None:
    """Refuse to serve a model that does not match its signature, when the environment names a
    key (``FLIGHTDELAY_SIGNING_PUBLIC_KEY``) or a keyless identity to trust; without one, say
    in one line that the signature is not checked."""
    from flightdelay.serving.signature import SignatureError, trusted, verify  # noqa: PLC0415

    key, identity = trusted()
    if key is None and identity is None:
        log.warning("%s: the model's signature is not checked (set FLIGHTDELAY_SIGNING_PUBLIC_KEY)",
                    model_dir.name)  # fmt: skip
        return
    try:
        verify(model_dir, key, identity)
    except SignatureError as exc:
        raise BentoMLException(str(exc)) from exc
    log.info("%s: the model matches its signature", model_dir.name)


@bentoml.asgi_app(metadata_app, path="/")
@bentoml.service(
    name=BENTO_NAME,
    traffic={"timeout": 60, "max_concurrency": MAX_CONCURRENCY},
    workers=WORKERS,
    logging={"access": {"enabled": ACCESS_LOG}},
)
class FlightDelay:
    """Delay probabilities for scheduled flights out of New York."""

    model_ref = bentoml.models.BentoModel(
        os.environ.get("FLIGHTDELAY_MODEL_TAG", f"{MODEL_NAME}:latest")
    )

    def __init__(self) -> None:
        from flightdelay.serving.runtime import ServingModel  # noqa: PLC0415 - see the module docstring

        stored = self.model_ref
        check_signature(Path(stored.path))
        if not ServingModel.saved_in(stored.path):
            raise BentoMLException(
                f"{stored.tag} holds no ServingModel: import the model with `make bento`"
            )
        self.predictor = ServingModel.load(stored.path, threads=TREE_THREADS)
        self.categories: Mapping[str, Mapping[Any, int]] = self.predictor.categories
        info = stored.info
        self.threshold = float(info.metadata["threshold"])
        self.version = str(stored.tag.version)
        self.metadata: dict[str, Any] = {
            "model": str(stored.tag),
            "model_version": self.version,
            "git_sha": info.labels.get("git_sha"),
            "release": info.labels.get("version"),
            "params_hash": info.metadata.get("params_hash"),
            "threshold": self.threshold,
            "metrics": info.metadata.get("metrics", {}),
            "max_flights_per_request": MAX_FLIGHTS,
        }
        self.cards = read_cards(stored.path)  # none for a model imported without a card
        self.facts = self._facts()
        log.info("serving %s (threshold %.3f)", stored.tag, self.threshold)

    def _facts(self) -> ServiceFacts:
        """What the pages say: this model, its codes, the limits, its answer to the example."""
        flight = Flight(**Flight.model_json_schema()["examples"][0])
        example = flight.model_dump(mode="json", exclude_unset=True)  # in the fields' order
        known = not unknown_codes([flight], self.categories)
        return ServiceFacts(
            name=BENTO_NAME,
            model_version=self.version,
            release=self.metadata["release"],
            threshold=self.threshold,
            metrics=self.metadata["metrics"],
            origins=tuple(sorted(str(code) for code in self.categories.get("origin", {}))),
            carriers=len(self.categories.get("carrier", {})),
            destinations=len(self.categories.get("dest", {})),
            max_flights=MAX_FLIGHTS,
            max_body_bytes=MAX_BODY_BYTES,
            max_concurrency=MAX_CONCURRENCY,
            example=example,
            answer=[p.model_dump(mode="json") for p in self.score([flight])] if known else None,
        )

    def score(self, flights: Sequence[Flight]) -> list[Prediction]:
        """The answers for validated flights of known codes, in their order."""
        proba = self.predictor.predict_records([vars(f) for f in flights])  # the field values
        return [
            Prediction(probability=p, delayed=p >= self.threshold, model_version=self.version)
            for p in proba.tolist()
        ]

    # Not batchable, and run on the event loop: the compiled model scores one flight in under
    # 0.1 ms and 1,000 (the most a request may carry) in about 7 ms, so merging requests saves
    # little, while BentoML's adaptive batching learns its queueing wait as the mean of the waits
    # it caused and, after one burst, holds every lone request for 4-80 ms on end; a thread hop
    # per request costs more than the scoring itself.
    @bentoml.api(input_spec=FlightsInput, output_spec=PredictionsOutput)  # type: ignore[untyped-decorator]
    async def predict(self, flights: list[Flight], /) -> list[Prediction]:
        """Probability of a 15+ minute arrival delay for each flight, with the label at the
        model's threshold, in the order of the request."""
        return self.score(flights)


# add_asgi_middleware is added by @bentoml.service
FlightDelay.add_asgi_middleware(RequestGuard, max_body_bytes=MAX_BODY_BYTES)  # type: ignore[attr-defined]
FlightDelay.add_asgi_middleware(PredictionRecorder)  # type: ignore[attr-defined]
FlightDelay.add_asgi_middleware(OpenAPIDocument, about=_served_facts)  # type: ignore[attr-defined]
logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(ClientErrorLog())
