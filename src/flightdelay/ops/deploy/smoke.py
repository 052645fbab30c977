"""The smoke test of a colour, before it takes traffic: reference flights against the Pipeline.

The reference answers come from the Bento's own model: the pickled Pipeline that release keeps
beside the compiled ``ServingModel`` the service runs. So the test holds what this machine serves,
through HTTP, to what the pipeline fitted, to 1e-9, and ``/metadata`` must name the Bento's model
version.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from flightdelay.contract.names import MODEL_FILE
from flightdelay.contract.schema import Flight
from flightdelay.model.predict import predict_proba, records_frame
from flightdelay.model.store import load_model
from flightdelay.ops.deploy.colour import BentoInfo
from flightdelay.ops.deploy.config import DeployError

TOLERANCE = 1e-9


def reference_flights() -> list[dict[str, Any]]:
    """The API's example flight at other hours and days, with and without its optional fields."""
    example: dict[str, Any] = Flight.model_json_schema()["examples"][0]
    required = {k: v for k, v in example.items() if k in Flight.model_json_schema()["required"]}
    flights = []
    for base, (hour, day) in itertools.product(
        (example, required), ((600, 3), (1730, 27), (2130, 14))
    ):
        flights.append({**base, "sched_dep_time": hour, "day": day})
    return flights


def expected(bento: BentoInfo, flights: list[dict[str, Any]]) -> list[float]:
    """The Pipeline's probabilities for ``flights``."""
    model = load_model(bento.model_path / MODEL_FILE)
    full = [Flight(**f).model_dump() for f in flights]
    return [float(p) for p in predict_proba(model, records_frame(full))]


def smoke(port: int, bento: BentoInfo) -> None:
    """Check the colour on ``port`` serves ``bento``: ``/metadata`` and ``/predict``.

    Raises:
        DeployError: a request failed, or an answer is not the expected one (named).
    """
    url = f"http://127.0.0.1:{port}"
    flights = reference_flights()
    want = expected(bento, flights)
    try:
        meta = httpx.get(f"{url}/metadata", timeout=10).raise_for_status().json()
        got = httpx.post(f"{url}/predict", json=flights, timeout=10)
        answers = got.raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise DeployError(f"smoke test: {exc}") from exc
    if meta.get("model_version") != bento.model_version:
        raise DeployError(
            f"smoke test: /metadata names model {meta.get('model_version')!r}, "
            f"not {bento.model_version!r}"
        )
    if len(answers) != len(flights):
        raise DeployError(f"smoke test: {len(answers)} answers to {len(flights)} flights")
    for i, (answer, p) in enumerate(zip(answers, want, strict=True)):
        if (
            abs(answer["probability"] - p) > TOLERANCE
            or answer["model_version"] != bento.model_version
        ):
            raise DeployError(
                f"smoke test: flight {i} got probability {answer['probability']!r} from "
                f"{answer['model_version']!r}, expected {p!r} from {bento.model_version!r}"
            )
