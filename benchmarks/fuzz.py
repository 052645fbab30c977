"""API fuzzing of the Bento: schemathesis (`st run --checks all`) against `bentoml serve`.

Usage (from the repository root; `make fuzz` runs it with the project's files)::

    uv run --locked python -m benchmarks.fuzz --model models/model.joblib --params params.yaml \
        --metrics-in metrics/evaluate.json [--max-examples 200] [--max-time 300]

The model is imported into a throwaway BENTOML_HOME and `bentoml serve` starts on a free
127.0.0.1 port (as benchmarks/bench_http.py does). schemathesis reads the service's OpenAPI document
(``/docs.json``, as served) and accepts the known failures listed in ``KNOWN_DEFECTS`` (a
schemathesis baseline; none today); every other failure (a 5xx, a response outside its documented
schema, status or content type) fails the run. tests/e2e/test_fuzz.py
runs the same with a small example budget.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from benchmarks import bench_http as bench
from benchmarks import cli

log = logging.getLogger("fuzz")
BIN = Path(sys.executable).parent
SEED = 2013
#: failures accepted (schemathesis baseline entries), each a reported service defect; none today
KNOWN_DEFECTS: list[dict[str, str]] = []
#: a body valid under the schema may still be a 400: the schema cannot say "a code the model
#: knows" or "a real calendar date", so positive_data_acceptance does not apply
EXCLUDED_CHECKS = ["positive_data_acceptance"]


def st_command(base_url: str, work: Path, max_examples: int, max_time_s: int) -> list[str]:
    """Fetch the document into ``work``, write the baseline; the `st run` argv."""
    schema = work / "openapi.json"
    schema.write_bytes(httpx.get(f"{base_url}/docs.json", timeout=30).content)
    baseline = work / "baseline.json"
    entries = {"format_version": 1, "schemathesis_version": "4.32.5", "entries": KNOWN_DEFECTS}
    baseline.write_text(json.dumps(entries))
    return [
        str(BIN / "st"), "run", str(schema), "--url", base_url,
        "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
        "--max-examples", str(max_examples), "--seed", str(SEED),
        "--phases", "examples,coverage,fuzzing", "--max-time", str(max_time_s),
        "--request-timeout", "30", "--workers", "1", "--no-color",
        "--generation-database", "none", "--baseline", str(baseline),
        "--report", "ndjson", "--report-ndjson-path", str(work / "events.ndjson"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__, rows=False)
    parser.add_argument("--max-examples", type=int, default=200, help="cases per operation")
    parser.add_argument("--max-time", type=int, default=300, help="seconds for the whole run")
    args = parser.parse_args(argv)

    bench.setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the server group
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        tag = bench.import_model(Path(tmp), args)
        with bench.serving(Path(tmp), tag) as server:
            url = server.url
            cmd = st_command(url, Path(tmp), args.max_examples, args.max_time)
            log.info("fuzz: %s", " ".join(cmd))
            # cwd: schemathesis keeps a cache directory in its working directory
            code = subprocess.run(cmd, cwd=tmp, check=False).returncode  # noqa: S603 - fixed argv
            alive = httpx.get(f"{url}/readyz", timeout=10).status_code == httpx.codes.OK
    log.info("fuzz: schemathesis exit %d; server %s afterwards", code, "up" if alive else "DOWN")
    return code or (0 if alive else 1)


if __name__ == "__main__":
    raise SystemExit(main())
