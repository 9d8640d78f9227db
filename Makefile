# The commands a person types. `make run` sets everything up and serves; `make test` tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MODELS ?= models
MODEL_NAME ?= moderation
# Retraining (docs/retraining.md): the audit store verdicts come from (an absent SQLite file is
# skipped), the dataset directory with its frozen evaluation split, and demo images added per class.
AUDIT_URL ?= sqlite:///var/audit.sqlite3
DATASET ?= data/datasets/$(MODEL_NAME)
DEMO_PER_CLASS ?= 1200
DEBIAN_PACKAGES := fonts-dejavu-core fonts-noto-cjk mate-backgrounds prometheus chromium chromium-driver
PROTO := proto/moderation_api/v1/moderation.proto proto/moderation_api/v1/audit.proto proto/moderation_api/tfserving/tensor.proto proto/moderation_api/tfserving/predict.proto proto/moderation_api/kserve_v2/grpc_predict_v2.proto
GENERATED := moderation_api/v1/moderation_pb2.py moderation_api/v1/moderation_pb2_grpc.py moderation_api/v1/audit_pb2_grpc.py moderation_api/tfserving/predict_pb2_grpc.py moderation_api/kserve_v2/grpc_predict_v2_pb2_grpc.py

.PHONY: run setup system-deps venv proto model train evaluate benchmark-model test lint bench clean help cluster cluster-down chaos review

help:
	@echo "make run    - set everything up (Debian packages, venv, protobuf code, demo model) and serve on 127.0.0.1:50051"
	@echo "make test   - lint and run the test suite"
	@echo "make model  - train and export the demo model if models/$(MODEL_NAME)/ has no version"
	@echo "make train  - retrain from the audit store ($(AUDIT_URL)) + demo data, evaluate, publish if not worse"
	@echo "make evaluate - evaluate the serving version (CANDIDATE=models/.../N to compare one) on the frozen split"
	@echo "make benchmark-model - the demo benchmark (both heads, a baseline); figures into docs/retraining.md"
	@echo "make bench  - measure serving speed (engine, CPU floor, server) and update the README"
	@echo "make quantize - add an int8 ONNX model to the newest version (VERSION_DIR=models/.../N), kept only within an AUC margin"
	@echo "make proto  - generate the Python protobuf/gRPC code from $(PROTO)"
	@echo "make review - the operators' review tool on http://127.0.0.1:8080/ (for a server from make run; docs/review-tool.md)"
	@echo "make cluster      - 3 replicas behind Envoy with a private PostgreSQL audit store, on loopback (no Docker)"
	@echo "make cluster-down - stop exactly what make cluster started"
	@echo "make chaos  - kill / rolling restart / model rollout / scale-out under load; figures in var/chaos/"
	@echo "make bench-frameworks - KServe (1 and 2 workers, own .venv-kserve) against this server, same load; var/bench/"

run: setup model
	$(PY) -m server.main --model-repository $(MODELS) --model-name $(MODEL_NAME) $(ARGS)

setup: system-deps venv proto

# Debian packages the demo data generator needs (fonts for English and Japanese text, photos),
# prometheus (promtool and the server) for the alert-rule and scrape tests, and chromium with
# its driver for the review tool's browser test (Selenium drives them; nothing is downloaded).
system-deps:
	@if dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then echo "debian packages: present"; else \
	  echo "debian packages: installing $(DEBIAN_PACKAGES)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES); fi
	@# kubectl renders the Kubernetes manifests in tests/test_deploy.py. Any kubectl will do, and one
	@# from another source may already own /usr/bin/kubectl, so Debian's is only the fallback.
	@command -v kubectl >/dev/null || { echo "kubectl: installing kubernetes-client"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client; }

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# --no-deps: tensorflow-serving-api would otherwise pull the full `tensorflow` wheel beside tensorflow-cpu.
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

proto: $(GENERATED)

$(GENERATED) &: $(PROTO) $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

model: setup
	$(PY) -m training.train_demo --models $(MODELS) --name $(MODEL_NAME) --if-missing

# TRAIN_ARGS: e.g. --export verdicts.jsonl, --force, --smoke, --set train.epochs=20.
train: setup
	$(PY) -m training run --audit-url-if-exists $(AUDIT_URL) --demo-per-class $(DEMO_PER_CLASS) \
	  --dataset $(DATASET) --models $(MODELS) --name $(MODEL_NAME) $(TRAIN_ARGS)

# CANDIDATE: a version directory to compare with the serving one; reports under var/evaluation/.
evaluate: setup
	$(PY) -m training evaluate --dataset $(DATASET) --models $(MODELS) --name $(MODEL_NAME) \
	  $(if $(CANDIDATE),--candidate $(CANDIDATE)) $(EVAL_ARGS)

# Minutes on 2 cores; BENCH_MODEL_ARGS: e.g. --per-class 1000.
benchmark-model: setup
	$(PY) -m training benchmark $(BENCH_MODEL_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q tests

# REVIEW_ARGS: e.g. --review-target host:port --fetch-allow 10.0.0.0/8; the token from
# MODERATION_REVIEW_TOKEN (or --review-token-file), else a random one is logged.
review: setup
	$(PY) -m review $(REVIEW_ARGS)

# Serving speed, side by side in one run; writes var/bench/ and the README's table.
# The opt-in int8 model is measured beside float32, so it is added first if the version has none.
bench: model
	$(PY) -m training.quantize --models $(MODELS) --name $(MODEL_NAME) --if-missing || echo "no accepted int8 model: float32 only"
	$(PY) -m loadtest.bench --models $(MODELS) --name $(MODEL_NAME)

# KServe against this server on this machine, by the same load generator: see loadtest/frameworks.py.
# KServe lives in its own .venv-kserve (loadtest/requirements-kserve.txt, installed on first use),
# never in .venv; nothing in `make test` needs it. FRAMEWORKS_ARGS: e.g. --step-s 5, --only ours.
.PHONY: bench-frameworks
bench-frameworks: model
	$(PY) -m loadtest.frameworks --models $(MODELS) --name $(MODEL_NAME) $(FRAMEWORKS_ARGS)

# CLUSTER_ARGS: e.g. --replicas 2, --audit-url sqlite, or server flags after `--`.
cluster: setup model
	$(PY) -m loadtest.cluster up --models $(MODELS) --model-name $(MODEL_NAME) $(CLUSTER_ARGS)

cluster-down:
	$(PY) -m loadtest.cluster down

chaos: setup model
	for scenario in kill rolling rollout scaleout; do \
	  $(PY) -m loadtest.chaos $$scenario --models $(MODELS) --model-name $(MODEL_NAME) $(CHAOS_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) moderation_api .pytest_cache .ruff_cache

# Opt-in int8 (docs/retraining.md#optional-int8): adds model.int8.onnx and its evaluation to a
# version; served only with --model-engine onnx_int8 or --model-prefer-int8 true.
# QUANTIZE_ARGS: e.g. --auc-margin 0.002 --calibration-images 400.
.PHONY: quantize
quantize: setup
	$(PY) -m training.quantize $(VERSION_DIR) --models $(MODELS) --name $(MODEL_NAME) $(QUANTIZE_ARGS)
