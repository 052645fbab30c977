#!/usr/bin/env bash
# Smoke test of the API image: run it, wait for /readyz, POST real flights to /predict and check
# the answers, check /metadata and a bad request, stop it. Exit 0 only when every check passes:
# this decides whether a build counts.
#
# Usage: scripts/container-smoke.sh [IMAGE]
#   IMAGE defaults to flight-delay:sha-<sha7> of the current commit (see `make container`).
# Env: PORT (default: a free loopback port), READY_TIMEOUT (seconds, default 180).
# Runs the image with Docker when an engine answers, else with buildah (chroot isolation, host
# network: the server listens on the host's loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

START=$SECONDS
log() { printf '[container-smoke] %s (%ss)\n' "$*" "$((SECONDS - START))"; }
fail() { log "FAIL: $*"; exit 1; }

IMAGE=${1:-$(uv run --locked python -m flightdelay.ops.release tags \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["images"][1])')}
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
READY_TIMEOUT=${READY_TIMEOUT:-180}
URL=http://127.0.0.1:$PORT
LOG=$(mktemp /tmp/container-smoke.XXXXXX.log)

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  log "docker run $IMAGE on $URL"
  cid=$(docker run -d -p "127.0.0.1:$PORT:3000" "$IMAGE")
  stop() { docker logs "$cid" >"$LOG" 2>&1 || true; docker rm -f "$cid" >/dev/null 2>&1 || true; }
else
  command -v buildah >/dev/null || fail "neither a Docker engine nor buildah is available"
  export BUILDAH_ISOLATION=chroot   # no OCI runtime works on this kind of host
  ctr=$(buildah from --pull-never "$IMAGE") || fail "image $IMAGE not in local storage"
  log "buildah run $IMAGE ($ctr) on $URL"
  # entrypoint.sh with a flag argument runs `bentoml serve <flag> $BENTO_PATH`
  setsid buildah run --network host "$ctr" -- \
    /home/bentoml/bento/env/docker/entrypoint.sh --port "$PORT" >"$LOG" 2>&1 &
  pid=$!
  stop() {
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    # BentoML starts its worker in a session of its own, which the group kill misses: it is left
    # orphaned (parent 1) once the server is gone
    pkill -KILL -P 1 -f "_bentoml_impl.worker.service /home/bentoml/bento " 2>/dev/null || true
    buildah rm "$ctr" >/dev/null 2>&1 || true
  }
fi
cleanup() { status=$?; stop; [ "$status" -eq 0 ] || grep -v "^\s" "$LOG" | head -c 4000 >&2; rm -f "$LOG"; }
trap cleanup EXIT

until curl -sf "$URL/readyz" >/dev/null; do
  [ $((SECONDS - START)) -lt "$READY_TIMEOUT" ] || fail "/readyz not 200 after ${READY_TIMEOUT}s"
  if [ -n "${pid:-}" ] && ! kill -0 "$pid" 2>/dev/null; then fail "the server exited"; fi
  sleep 0.5
done
log "ready: /readyz is 200"

FLIGHTS='[
 {"year": 2013, "month": 11, "day": 27, "sched_dep_time": 1730, "sched_arr_time": 2025,
  "carrier": "UA", "origin": "EWR", "dest": "ORD", "distance": 719, "tailnum": "N14228",
  "precip": 0.02, "visib": 6.0},
 {"year": 2013, "month": 12, "day": 2, "sched_dep_time": 900, "sched_arr_time": 1215,
  "carrier": "B6", "origin": "JFK", "dest": "LAX", "distance": 2475},
 {"year": 2013, "month": 7, "day": 4, "sched_dep_time": 600, "sched_arr_time": 830,
  "carrier": "DL", "origin": "LGA", "dest": "ATL", "distance": 762, "temp": 80.1, "wind_speed": 9.2}
]'
answers=$(curl -sf -X POST "$URL/predict" -H 'Content-Type: application/json' -d "$FLIGHTS") \
  || fail "/predict did not answer 200"
metadata=$(curl -sf "$URL/metadata") || fail "/metadata did not answer 200"
python3 - "$answers" "$metadata" <<'PY' || fail "wrong answers"
import json, sys
answers, meta = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert len(answers) == 3, answers
for a in answers:
    assert 0.0 <= a["probability"] <= 1.0, a
    assert a["delayed"] == (a["probability"] >= meta["threshold"]), (a, meta["threshold"])
    assert a["model_version"] == meta["model_version"], (a, meta)
assert meta["git_sha"] and meta["metrics"]["test.roc_auc"] > 0.5, meta
print("[container-smoke] predictions:", [round(a["probability"], 4) for a in answers])
print("[container-smoke] model", meta["model"], "git", meta["git_sha"])
PY
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/predict" \
  -H 'Content-Type: application/json' -d '[{"year": 2013}]')
[ "$code" = 400 ] || fail "a bad request answered $code, not 400"
curl -sf -X POST "$URL/predict" -H 'Content-Type: application/json' -d "$FLIGHTS" >/dev/null \
  || fail "no answer after a bad request"
log "OK: $IMAGE serves /readyz, /predict, /metadata and rejects bad input"
