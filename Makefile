# flight-delay: `make help` lists the targets. Every target sets itself up (uv, locked deps).
SHELL := /bin/bash
UV ?= uv
RUN := $(UV) run --locked

.DEFAULT_GOAL := help
.PHONY: help setup repro test check lint format typecheck imports dag fuzz soak audit push pull sweep mlflow-ui promote score clean bento container container-smoke deploy deploy-staging deploy-production rollback deploy-status bento-export bento-import sbom bench-http docs lock-current notify

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install uv if missing, then the locked environment (.venv)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --locked

repro: setup ## run the pipeline (dvc repro): ingest -> features -> train -> evaluate -> benchmark
	$(RUN) dvc repro

test: setup ## the whole test suite (lint, types, unit, integration, e2e)
	$(RUN) pytest

lint: setup ## ruff check + format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup ## apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

typecheck: setup ## mypy, strict on src/
	$(RUN) mypy

imports: setup ## the layer contracts of src/flightdelay (import-linter, pyproject.toml)
	$(RUN) lint-imports

check: lint typecheck imports repro lock-current test ## what CI runs (the pipeline before the tests: the full-data checks read its outputs)

# lock-current compares dvc.lock and the metrics with HEAD (DVC autostages dvc.lock). It leaves out
# metrics/benchmark.json, timings new on every run, and the md5 dvc.lock records for it (UNTIMED)
UNTIMED = awk '/- path: metrics\/benchmark\.json$$/ {skip = 1; next} skip && /^ +(hash|md5|size): / {next} {skip = 0; print}'
lock-current: ## after `make repro`: the committed dvc.lock and metrics are what it produced (timings aside)
	@git diff --exit-code HEAD -- metrics/train.json metrics/evaluate.json && diff <(git show HEAD:dvc.lock | $(UNTIMED)) <($(UNTIMED) dvc.lock) || { echo "::error::dvc.lock or metrics/*.json differ from what dvc repro produces: run dvc repro and commit dvc.lock and metrics/"; exit 1; }

dag: setup ## print the pipeline DAG
	$(RUN) dvc dag

fuzz: setup ## schemathesis (all checks) against bentoml serve of models/model.joblib on loopback
	$(RUN) python -m benchmarks.fuzz --model models/model.joblib --params params.yaml \
		--metrics-in metrics/evaluate.json

soak: setup ## 10 min at 40 req/s against bentoml serve: zero errors, server RSS flat within 5 %
	$(RUN) python -m benchmarks.soak --model models/model.joblib --params params.yaml \
		--metrics-in metrics/evaluate.json --rows data/features/test.parquet \
		--duration 600 --rate 40 --max-drift 0.05 --out metrics/soak.json

audit: setup ## pip-audit of uv.lock (skips, saying so, when offline) and a scan for credentials
	$(RUN) python scripts/audit.py
	$(RUN) python scripts/scan_secrets.py

bench-http: setup ## HTTP load benchmark of the service (bentoml serve on loopback) -> metrics/benchmark_http.json
	$(RUN) python -m benchmarks.bench_http --model models/model.joblib --params params.yaml \
		--metrics-in metrics/evaluate.json --rows data/features/test.parquet \
		--out metrics/benchmark_http.json

docs: setup ## regenerate the tables of README.md and docs/*.md from metrics/*.json
	$(RUN) flightdelay docs

BASE ?= main
report: setup ## the pull-request report against BASE (default main): report.md + report_assets/
	$(RUN) flightdelay report --base $(BASE)

# The DVC remote (.dvc/config); another one with: make push REMOTE=name
REMOTE ?=
REMOTE_ARG := $(if $(REMOTE),-r $(REMOTE))

push: setup ## check the DVC remote, then upload outputs and run-cache (dvc push --run-cache)
	$(RUN) flightdelay remote push $(REMOTE_ARG)

pull: setup ## check the DVC remote, then download outputs and run-cache (dvc pull --run-cache)
	$(RUN) flightdelay remote pull $(REMOTE_ARG)

bento: setup ## import models/model.joblib into BentoML and build the Bento flight-delay:<semver>-<sha7>
	$(RUN) python -m flightdelay.ops.release bento --model models/model.joblib \
		--params params.yaml --metrics metrics/evaluate.json

# the repository URL for the image's org.opencontainers.image.source label (CI sets it)
IMAGE_SOURCE ?=
container: bento ## OCI image flight-delay:<semver> + flight-delay:sha-<sha7>, OCI labels (Docker, else buildah)
	$(RUN) python -m flightdelay.ops.release container $(if $(IMAGE_SOURCE),--source $(IMAGE_SOURCE))

# The variable holding the webhook URL (a CI secret); the text is the environment's NOTIFY_TEXT
WEBHOOK_ENV ?= NOTIFY_WEBHOOK_URL
notify: setup ## post $NOTIFY_TEXT to the Slack-compatible webhook in $NOTIFY_WEBHOOK_URL (unset: nothing sent)
	$(RUN) flightdelay notify --webhook-env $(WEBHOOK_ENV) --text "$$NOTIFY_TEXT"

container-smoke: ## run the image, wait for /readyz, check /predict and /metadata, stop it
	scripts/container-smoke.sh

# Blue-green deploys (deploy/environments.yaml; state, proxies and logs under .deploy/ or
# $FLIGHTDELAY_DEPLOY_DIR). BENTO defaults to the current commit's Bento (`make bento` builds it).
BENTO ?= $(shell $(RUN) python -m flightdelay.ops.release tags 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["bento"])')
DEPLOY_ENV ?= staging
deploy: setup ## deploy BENTO (default: this commit's) to DEPLOY_ENV: ready, smoke, 10/50/100 %, watch
	$(RUN) flightdelay deploy --env $(DEPLOY_ENV) $(BENTO)

deploy-staging: DEPLOY_ENV = staging
deploy-staging: deploy ## deploy BENTO to staging

deploy-production: DEPLOY_ENV = production
deploy-production: deploy ## deploy BENTO to production; it must have passed staging

rollback: setup ## deploy again the Bento that passed DEPLOY_ENV before the live one
	$(RUN) flightdelay rollback --env $(DEPLOY_ENV)

deploy-status: setup ## what each environment serves, and its last deploy
	$(RUN) flightdelay deploy status

sbom: setup ## CycloneDX SBOM of this commit's Bento (into its folder), then pip-audit of its packages
	sbom="$$($(RUN) python -m flightdelay.ops.release sbom)" && $(RUN) python scripts/audit.py --sbom "$$sbom"

# The Bento as one file (models included), from the release job to the deploy host
BENTO_FILE ?= dist/flight-delay.bento
bento-export: setup ## write BENTO (default: this commit's) to BENTO_FILE
	mkdir -p $(dir $(BENTO_FILE))
	$(RUN) bentoml export $(BENTO) $(BENTO_FILE)

bento-import: setup ## put the Bento of BENTO_FILE into the BentoML store (BENTOML_HOME)
	$(RUN) bentoml import $(BENTO_FILE)

# The sweep grid, declared here only: every combination becomes one queued experiment.
# One knob per candidate; override on the command line: make sweep SWEEP_LOGREG_C="0.1 10"
SWEEP_LOGREG_C ?= 0.05 0.5
SWEEP_HGB_LEARNING_RATE ?= 0.03 0.1
SWEEP_JOBS ?= 2
PROMOTE_METRIC ?= train.valid.winner.roc_auc
SCORE_IN ?= data/features/test.parquet
SCORE_OUT ?= scored/predictions.parquet

sweep: setup ## queue the SWEEP_* grid as DVC experiments, run SWEEP_JOBS (2) at a time, compare
	@for c in $(SWEEP_LOGREG_C); do for lr in $(SWEEP_HGB_LEARNING_RATE); do \
	  $(RUN) dvc exp run --queue -S train.candidates.logreg.C=$$c \
	    -S train.candidates.hgb.learning_rate=$$lr || exit 1; done; done
	$(RUN) dvc queue start -j $(SWEEP_JOBS)
	@while $(RUN) dvc queue status | grep -qE 'Queued|Running'; do sleep 10; \
	  echo "sweep: $$($(RUN) dvc queue status | grep -cE 'Queued|Running') experiment(s) to go"; done
	$(RUN) dvc exp show --drop '.*' --precision 4 --keep \
	  '^(Experiment|State|winner|valid\..*|test\.(roc_auc|brier)|train\.candidates\.(logreg\.C|hgb\.learning_rate))$$'

MLFLOW_PORT ?= 5000
mlflow-ui: setup ## the MLflow UI on the tracking store (http://127.0.0.1:5000; MLFLOW_PORT)
	$(RUN) mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} \
	  --host 127.0.0.1 --port $(MLFLOW_PORT)

promote: setup ## apply the best experiment by PROMOTE_METRIC, register it as MLflow champion
	$(RUN) flightdelay promote --metric $(PROMOTE_METRIC)

score: setup ## score SCORE_IN (Parquet/CSV) with the model -> SCORE_OUT (+ .rejects.parquet)
	$(RUN) flightdelay score --model models/model.joblib --in $(SCORE_IN) --out $(SCORE_OUT)

clean: ## remove caches of tools (not DVC outputs)
	rm -rf .pytest_cache .mypy_cache .ruff_cache
