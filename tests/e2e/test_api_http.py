"""The Bento over real HTTP: `bentoml serve` of the built Bento on a loopback port.

The model comes from the sampled pipeline run (the ``small_repo`` fixture); the Bento is built by
``flightdelay.ops.release`` exactly as ``make bento`` builds it, in a BentoML home of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from bento_helpers import Server, release, release_repo, serving, tags

from flightdelay.compile.compiler import compile_pipeline
from flightdelay.contract.names import BENTO_NAME, MODEL_NAME
from flightdelay.contract.schema import CATEGORICAL, TARGET, Flight
from flightdelay.core.params import HGBParams, load_params, params_hash
from flightdelay.model.candidates import build
from flightdelay.model.predict import predict_proba, records_frame
from flightdelay.model.store import load_model, save_model
from flightdelay.ops.release import SERVICE_ROOTS, requirements_from_lock
from flightdelay.serving.prediction_log import read_lines

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
GOOD = Flight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]


@pytest.fixture(scope="module")
def repo(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return release_repo(tmp_path_factory.mktemp("release"), small_repo)


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("bentoml")
    release(repo, home, "bento")
    bento = str(tags(repo, home)["bento"])
    with serving(bento, home, home / "serve.log") as srv:
        log.warning("bentoml serve %s: /readyz after %.1f s", bento, srv.ready_s)
        (home.parent / "ready_seconds.txt").write_text(f"{srv.ready_s:.2f}\n")
        yield srv


@pytest.fixture(scope="module")
def test_rows(small_repo: Path) -> pd.DataFrame:
    """Test-set rows whose codes the model knows (an unknown code is a 400, tested below)."""
    frame = pd.read_parquet(small_repo / "data/features/test.parquet").drop(columns=[TARGET])
    known = load_model(small_repo / "models/model.joblib").named_steps["features"].categories_
    mask = np.logical_and.reduce([frame[c].isin(list(known[c])) for c in CATEGORICAL])
    return frame[mask].head(200).reset_index(drop=True)


def as_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN and None become null, numpy scalars Python numbers."""
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return rows


def post(server: Server, body: object) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=30)


def test_batch_equals_the_reference_prediction_path(
    server: Server, test_rows: pd.DataFrame, small_repo: Path
) -> None:
    resp = post(server, as_json(test_rows))
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    model = load_model(small_repo / "models/model.joblib")
    expected = predict_proba(model, test_rows)
    threshold = yaml.safe_load((small_repo / "params.yaml").read_text())["evaluate"]["threshold"]
    got = np.array([a["probability"] for a in answers])
    assert len(answers) == len(test_rows) > 50
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [a["delayed"] for a in answers] == [bool(p >= threshold) for p in expected]
    assert len({a["model_version"] for a in answers}) == 1


def test_single_flight_and_missing_weather(server: Server, small_repo: Path) -> None:
    bare = {k: v for k, v in GOOD.items() if k not in {"precip", "visib", "tailnum"}}
    resp = post(server, [bare])
    assert resp.status_code == 200, resp.text
    (answer,) = resp.json()
    model = load_model(small_repo / "models/model.joblib")
    (expected,) = predict_proba(model, records_frame([Flight(**bare).model_dump()]))
    assert math.isclose(answer["probability"], expected, abs_tol=1e-9)
    assert 0.0 < answer["probability"] < 1.0


def test_every_answer_is_in_the_prediction_log_with_its_request_id(server: Server) -> None:
    """The workers write each answered flight to $BENTOML_HOME/predictions, off the hot path."""
    flights = [GOOD, {**GOOD, "sched_dep_time": 600}, {**GOOD, "sched_dep_time": 2100}]
    resp = httpx.post(f"{server.url}/predict", json=flights, timeout=10,
                      headers={"X-Request-ID": "e2e-log-1"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    folder = server.log.parent / "predictions"
    deadline, lines = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(lines) < len(flights):
        lines = [x for x in read_lines(folder) if x["request_id"] == "e2e-log-1"]
        time.sleep(0.1)
    assert [x["probability"] for x in lines] == [a["probability"] for a in resp.json()]
    assert [x["flight"]["sched_dep_time"] for x in lines] == [1730, 600, 2100]
    assert {x["model_version"] for x in lines} == {resp.json()[0]["model_version"]}
    anonymous = post(server, [GOOD])  # without the header, the service names the request
    assert anonymous.status_code == 200
    deadline, ids = time.monotonic() + 10, set()
    while time.monotonic() < deadline and len(ids) < 1:
        ids = {x["request_id"] for x in read_lines(folder)} - {"e2e-log-1", ""}
        time.sleep(0.1)
    assert ids and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_concurrent_requests_do_not_mix_answers(
    server: Server, test_rows: pd.DataFrame, small_repo: Path
) -> None:
    """40 requests of 1-5 distinct flights each, 16 at a time: every answer is the reference
    prediction of its own flights, and the one the same request gets alone."""
    sizes = [1 + i % 5 for i in range(40)]
    starts = np.cumsum([0, *sizes[:-1]])
    assert starts[-1] + sizes[-1] <= len(test_rows)  # no flight in two requests
    bodies = [as_json(test_rows.iloc[s : s + n]) for s, n in zip(starts, sizes, strict=True)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda body: post(server, body), bodies))
    assert [r.status_code for r in answers] == [200] * len(bodies)
    model = load_model(small_repo / "models/model.joblib")
    reference = predict_proba(model, test_rows)
    got = [[a["probability"] for a in resp.json()] for resp in answers]
    for start, size, probabilities in zip(starts, sizes, got, strict=True):
        expected = reference[start : start + size]
        assert len(probabilities) == size
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9)
    for body, probabilities in zip(bodies, got, strict=True):
        alone = [a["probability"] for a in post(server, body).json()]
        assert probabilities == pytest.approx(alone, abs=1e-12)


def _with(**changes: object) -> list[dict[str, object]]:
    return [{**GOOD, **changes}]


BAD = {
    "missing carrier": ([{k: v for k, v in GOOD.items() if k != "carrier"}], r"carrier.*required"),
    "wrong type": (_with(distance="far"), r"distance.*valid number"),
    "unknown origin": (_with(origin="XYZ"), r"\[0\]\.origin: unknown airport code 'XYZ'"),
    "unknown dest": (_with(dest="QQQ"), r"\[0\]\.dest: unknown airport code 'QQQ'"),
    "unknown carrier": (_with(carrier="ZZ"), r"\[0\]\.carrier: unknown carrier code 'ZZ'"),
    "negative distance": (_with(distance=-5), r"distance.*greater than 0"),
    "bad date": (_with(month=2, day=30), r"year/month/day"),
    "extra field": (_with(gate="B12"), r"gate.*Extra inputs are not permitted"),
    "empty list": ([], r"at least 1 item"),
    "too many": ([GOOD] * 1001, r"at most 1000 items"),
    "not a list": ({"flights": [GOOD]}, r"valid list"),
}  # fmt: skip


@pytest.mark.parametrize("body, message", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_a_400_naming_the_field(server: Server, body: object, message: str) -> None:
    resp = post(server, body)
    assert resp.status_code == 400, resp.text
    assert re.search(message, resp.text), resp.text
    assert post(server, [GOOD]).status_code == 200


def test_a_rejected_request_is_one_warning_line_in_the_server_log(server: Server) -> None:
    assert post(server, _with(distance=-7)).status_code == 400
    wanted = "400 for /predict [POST]: root.0.distance: Input should be greater than 0"
    deadline = time.monotonic() + 10
    while wanted not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = server.log.read_text()
    assert wanted in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("raw", [b'[{"year": 2013,', b"\xff\xfe", b""])
def test_malformed_json_is_a_400(server: Server, raw: bytes) -> None:
    headers = {"content-type": "application/json"}
    resp = httpx.post(f"{server.url}/predict", content=raw, headers=headers, timeout=30)
    assert resp.status_code == 400, resp.text
    assert re.search(r"Invalid JSON|valid list", resp.text), resp.text
    assert post(server, [GOOD]).status_code == 200


def test_metadata(server: Server, repo: Path, small_repo: Path, tmp_path: Path) -> None:
    """The served release is the repository's: its pyproject version, its commit, the tags
    ``release tags`` prints for it, and the digest of the model file it was built from."""
    meta = httpx.get(f"{server.url}/metadata", timeout=10).json()
    sha7 = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    version = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["version"]
    digest = hashlib.sha256((repo / "models/model.joblib").read_bytes()).hexdigest()
    evaluate = json.loads((small_repo / "metrics/evaluate.json").read_text())
    assert tags(repo, tmp_path) == {
        "bento": f"{BENTO_NAME}:{version}-{sha7}",
        "images": [f"{BENTO_NAME}:{version}", f"{BENTO_NAME}:sha-{sha7}"],
    }
    assert meta["git_sha"] == sha7
    assert meta["release"] == version
    assert meta["model_version"] == f"{version}-{sha7}-{digest[:8]}"
    assert meta["model"] == f"{MODEL_NAME}:{meta['model_version']}"
    assert meta["threshold"] == evaluate["threshold"]
    assert meta["metrics"]["test.roc_auc"] == evaluate["test.roc_auc"]
    assert meta["params_hash"] == params_hash(load_params(repo / "params.yaml"))
    assert post(server, [GOOD]).json()[0]["model_version"] == meta["model_version"]


def test_health_metrics_and_docs(server: Server) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path
    post(server, [GOOD])
    metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    assert 'bentoml_service_request_total{endpoint="/predict"' in metrics.text
    assert httpx.get(f"{server.url}/", timeout=10).status_code == 200
    spec = httpx.get(f"{server.url}/docs.json", timeout=10).json()
    assert "/predict" in spec["paths"]
    assert spec["components"]["schemas"]["Flight"]["required"][:3] == ["year", "month", "day"]


def test_workers_serve_the_compiled_model_without_sklearn_or_pandas(server: Server) -> None:
    """release saved the ServingModel, so no process of the server maps the compiled code of
    scikit-learn, scipy, pandas or pyarrow (about 100 MB per worker)."""
    root = psutil.Process(server.pid)
    workers = root.children(recursive=True)
    assert workers
    paths = {m.path for p in [root, *workers] for m in p.memory_maps()}
    assert any("/numpy" in path for path in paths)  # the workers' own libraries are listed
    heavy = sorted(p for p in paths if re.search(r"/(sklearn|scipy|pandas|pyarrow)/", p))
    assert heavy == []
    assert "no serving model" not in server.log.read_text()


@pytest.fixture(scope="module")
def tree_repo(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release repository whose model is the hgb candidate (the sampled run may pick logreg)."""
    repo = release_repo(tmp_path_factory.mktemp("trees"), small_repo)
    train = pd.read_parquet(small_repo / "data/features/train.parquet")
    planes = pd.read_parquet(small_repo / "data/features/planes.parquet")
    model = build("hgb", HGBParams(max_iter=30, min_samples_leaf=20), 1, planes)
    save_model(model.fit(train.drop(columns=[TARGET]), train[TARGET]), repo / "models/model.joblib")
    return repo


def test_a_tree_model_is_served_through_onnxruntime_with_the_reference_answers(
    tree_repo: Path, test_rows: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("bentoml-trees")
    release(tree_repo, home, "bento")
    bento = str(tags(tree_repo, home)["bento"])
    with serving(bento, home, home / "serve.log") as srv:
        batch = post(srv, as_json(test_rows))
        singles = [post(srv, as_json(test_rows.iloc[[i]])) for i in range(5)]
        root = psutil.Process(srv.pid)
        paths = {m.path for p in root.children(recursive=True) for m in p.memory_maps()}
    assert batch.status_code == 200, batch.text
    expected = predict_proba(load_model(tree_repo / "models/model.joblib"), test_rows)
    got = np.array([a["probability"] for a in batch.json()])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    one = [r.json()[0]["probability"] for r in singles]
    np.testing.assert_allclose(one, expected[:5], rtol=0, atol=1e-9)
    assert any("/onnxruntime/" in path for path in paths)
    assert not any("/sklearn/" in path for path in paths)


IMPORTED = """
import importlib.metadata as md, json, re, sys
import flightdelay.serving.service
from flightdelay.serving.runtime import ServingModel
from flightdelay.contract.schema import Flight
flights = Flight.model_config["json_schema_extra"]["examples"]
ServingModel.load(sys.argv[1]).predict_records(flights)  # a tree model, compiled
dists = md.packages_distributions()
names = {d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])}
print(json.dumps(sorted({re.sub(r"[-_.]+", "-", n).lower() for n in names})))
"""


def test_bento_packages_cover_what_the_service_imports(tree_repo: Path, tmp_path: Path) -> None:
    """The image installs only the Bento's packages: a module the service needs beyond them would
    fail only in the container; and the service runs the compiled model without the training
    stack (release refuses a model it cannot compile)."""
    model = tree_repo / "models/model.joblib"
    serving_model = compile_pipeline(load_model(model))
    assert serving_model is not None
    serving_model.save(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    # the project itself; setuptools' _distutils_hack (a .pth hook of the venv); an optional,
    # guarded import of charset_normalizer (the container smoke test shows the image runs
    # without); coverage, whose subprocess hook measures this child when CI measures coverage
    tooling = {"flight-delay", "setuptools", "charset-normalizer", "coverage"}
    imported = set(json.loads(done.stdout)) - tooling
    lock = (ROOT / "uv.lock").read_text()
    pinned = {line.split("==")[0] for line in requirements_from_lock(lock, SERVICE_ROOTS)}
    assert {"bentoml", "numpy", "onnxruntime", "pydantic"} <= imported
    assert not imported & {"scikit-learn", "scipy", "pandas", "pyarrow", "joblib"}
    assert imported <= pinned, f"not in the Bento: {sorted(imported - pinned)}"


def _readme_block(lang: str, after: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(after) :]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert match, f"no {lang} block after {after!r} in README.md"
    return match.group(1)


def test_readme_consumer_examples_work_as_written(server: Server) -> None:
    host = server.url.removeprefix("http://")
    curl = _readme_block("bash", "## For consumers").replace("localhost:3000", host)
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", curl], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert '"probability"' in out.stdout
    code = _readme_block("python", "## For consumers").replace("localhost:3000", host)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "delayed" in out.stdout
