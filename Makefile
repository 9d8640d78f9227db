# The commands a person types. `make run` sets up what serving needs and serves; `make test`
# adds the test tools and tests everything.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MODELS ?= models
MODEL_NAME ?= moderation
# Retraining (docs/retraining.md): the audit store verdicts come from (an absent SQLite file is
# skipped), the dataset directory with its frozen evaluation split, and demo images added per class.
AUDIT_URL ?= sqlite:///var/audit.sqlite3
DATASET ?= data/datasets/$(MODEL_NAME)
DEMO_PER_CLASS ?= 1200
# Debian packages. `make run`: only the fonts (English and Japanese text) and photos the demo data
# generator draws with. `make test` adds prometheus (promtool and the server) for the alert-rule
# and scrape tests, and chromium with its driver for the review tool's browser test (Selenium
# drives them; nothing is downloaded); kubectl and PostgreSQL are handled below.
# Fonts and photos for the demo images: a training set and a held-out set the model benchmark
# measures on (training/demo_fonts.py says which font is in which).
RUN_DEBIAN_PACKAGES := fonts-dejavu-core fonts-noto-cjk mate-backgrounds fonts-liberation2 fonts-freefont-ttf \
  fonts-open-sans fonts-crosextra-carlito fonts-crosextra-caladea fonts-cantarell fonts-league-spartan \
  fonts-ebgaramond fonts-courier-prime fonts-comic-neue fonts-dancingscript fonts-tlwg-purisa-ttf \
  fonts-roboto-unhinted fonts-sil-andika fonts-b612 fonts-quicksand fonts-comfortaa fonts-hack fonts-inconsolata \
  fonts-dkg-handwriting fonts-breip fonts-humor-sans fonts-ipaexfont-gothic fonts-ipaexfont-mincho \
  fonts-motoya-l-maruberi fonts-motoya-l-cedar fonts-vlgothic fonts-sawarabi-gothic fonts-sawarabi-mincho \
  fonts-seto fonts-kouzan-mouhitsu fonts-aoyagi-soseki fonts-aoyagi-kouzan-t
TEST_DEBIAN_PACKAGES := prometheus chromium chromium-driver
# The same files setup.py compiles into the wheel.
PROTO := $(sort $(shell find proto -name '*.proto'))
GENERATED := $(foreach suffix,_pb2.py _pb2.pyi _pb2_grpc.py,$(patsubst proto/%.proto,%$(suffix),$(PROTO)))
# Two stamps: `make run` installs the serving and training locks, `make test` adds the rest to
# the same venv, so running one after the other upgrades it instead of recreating it.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
# Where the tests find PostgreSQL (tests/audit_support.py); `skip` skips those cases.
export MODERATION_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_FAST := -m "not slow and not e2e and not browser and not postgres"

.PHONY: run setup setup-test system-deps system-deps-test venv venv-test proto model train evaluate \
  benchmark-model test test-fast lint postgres bench bench-frameworks quantize clean help cluster \
  cluster-down chaos review lock

help:
	@echo "make run    - set up what serving needs (Debian fonts, venv, protobuf code, demo model) and serve on 127.0.0.1:50051"
	@echo "make test   - add the test tools (Debian packages, PostgreSQL if none answers), lint, run every test"
	@echo "make test-fast - the tests not marked slow, e2e, browser or postgres (a minute or two)"
	@echo "make lint   - scripts/check: ruff check, ruff format --check, mypy, import-linter"
	@echo "make model  - train and export the demo model if models/$(MODEL_NAME)/ has no version"
	@echo "make train  - retrain from the audit store ($(AUDIT_URL)) + demo data, evaluate, publish if not worse"
	@echo "make evaluate - evaluate the serving version (CANDIDATE=models/.../N to compare one) on the frozen split"
	@echo "make benchmark-model - the demo benchmark (both heads, a baseline); figures into docs/retraining.md"
	@echo "make bench  - measure serving speed (engine, CPU floor, server) and update the README"
	@echo "make quantize - add an int8 ONNX model to the newest version (VERSION_DIR=models/.../N), kept only within an AUC margin"
	@echo "make proto  - regenerate the Python protobuf/gRPC code (moderation_api/) from proto/"
	@echo "make review - the operators' review tool on http://127.0.0.1:8080/ (for a server from make run; docs/review-tool.md)"
	@echo "make cluster      - 3 replicas behind Envoy with a private PostgreSQL audit store, on loopback (no Docker)"
	@echo "make cluster-down - stop exactly what make cluster started"
	@echo "make chaos  - kill / rolling restart / model rollout / scale-out under load; figures in var/chaos/"
	@echo "make bench-frameworks - KServe (1 and 2 workers, own .venv-kserve) against this server, same load; var/bench/"
	@echo "make lock   - recompile requirements/*.txt from pyproject.toml (LOCK_ARGS=--upgrade to move pins)"
	@echo "make clean  - remove .venv and all generated code and build output"

run: setup model
	$(VENV)/bin/moderation-server --model-repository $(MODELS) --model-name $(MODEL_NAME) $(ARGS)

setup: system-deps venv proto

setup-test: setup system-deps-test venv-test

# apt-get update first: on a new machine the package lists are empty or old.
define apt_install
	@if dpkg -s $(1) >/dev/null 2>&1; then echo "debian packages: present ($(1))"; else \
	  echo "debian packages: installing $(1)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1); fi
endef

system-deps:
	$(call apt_install,$(RUN_DEBIAN_PACKAGES))

system-deps-test:
	$(call apt_install,$(TEST_DEBIAN_PACKAGES))
	@# kubectl renders the Kubernetes manifests in tests/test_deploy.py. Any kubectl will do, and one
	@# from another source may already own /usr/bin/kubectl, so Debian's is only the fallback.
	@command -v kubectl >/dev/null || { echo "kubectl: installing kubernetes-client"; apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubernetes-client; }

venv: $(RUN_STAMP)

venv-test: $(TEST_STAMP)

# Every package from a hashed lock (requirements/, `make lock`); then the project itself, editable
# and without dependencies or build isolation, so its console scripts exist and its build uses the
# locked setuptools and grpcio-tools (setup.py generates moderation_api/ in the tree, as make proto).
$(RUN_STAMP): requirements/run.txt pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --require-hashes -r requirements/run.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(TEST_STAMP): $(RUN_STAMP) requirements/dev.txt requirements/nodeps.txt
	$(PIP) install -q --require-hashes -r requirements/dev.txt
	@# --no-deps: tensorflow-serving-api would otherwise pull the full `tensorflow` beside tensorflow-cpu.
	$(PIP) install -q --no-deps --require-hashes -r requirements/nodeps.txt
	touch $@

proto: $(GENERATED)

# Order-only on the venv: installing it generates these already; only an edited .proto reruns this.
$(GENERATED) &: $(PROTO) | $(RUN_STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. $(PROTO)

# The locks, for Python 3.11 on Linux, each with every file's hash. dev.txt is resolved first (its
# current pins are the resolver's preferences, so a rerun moves nothing); the others are
# constrained by it, so every lock agrees on every version. LOCK_ARGS: --upgrade, or
# --upgrade-package NAME. tensorflow-serving-api stays apart: it is installed with --no-deps.
UV_COMPILE = $(VENV)/bin/uv pip compile -q --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: $(TEST_STAMP)
	$(UV_COMPILE) $(LOCK_ARGS) pyproject.toml requirements/build.in --all-extras -o requirements/dev.txt
	$(UV_COMPILE) pyproject.toml -c requirements/dev.txt -o requirements/serve.txt
	$(UV_COMPILE) pyproject.toml --extra savedmodel -c requirements/dev.txt -o requirements/serve-tensorflow.txt
	$(UV_COMPILE) pyproject.toml requirements/build.in --extra train -c requirements/dev.txt -o requirements/run.txt
	$(UV_COMPILE) requirements/build.in -c requirements/dev.txt -o requirements/build.txt
	$(UV_COMPILE) $(LOCK_ARGS) requirements/nodeps.in --no-deps -o requirements/nodeps.txt

model: setup
	$(PY) -m training run --config-name demo --if-missing --models $(MODELS) --name $(MODEL_NAME)

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

lint: $(TEST_STAMP)
	VENV=$(VENV) scripts/check

# A PostgreSQL for the audit-store tests: started (and installed) only if none answers at
# $(MODERATION_TEST_POSTGRES_URL).
postgres:
	.ci/postgres

test: setup-test lint postgres
	$(VENV)/bin/pytest -q tests

test-fast: setup-test
	$(VENV)/bin/pytest -q $(PYTEST_FAST) tests

# REVIEW_ARGS: e.g. --review-target host:port --fetch-allow 10.0.0.0/8; the token from
# MODERATION_REVIEW_TOKEN (or --review-token-file), else a random one is logged.
review: setup
	$(VENV)/bin/moderation-review $(REVIEW_ARGS)

# loadtest/ is benchmark tooling, not in the wheel: it runs from the checkout with the test venv
# (Envoy, PyYAML).
# Serving speed, side by side in one run; writes var/bench/ and the README's table.
# The opt-in int8 model is measured beside float32, so it is added first if the version has none.
bench: setup-test model
	$(PY) -m training quantize --models $(MODELS) --name $(MODEL_NAME) --if-missing || echo "no accepted int8 model: float32 only"
	$(PY) -m loadtest.bench --models $(MODELS) --name $(MODEL_NAME)

# KServe against this server on this machine, by the same load generator: see loadtest/frameworks.py.
# KServe lives in its own .venv-kserve (loadtest/requirements-kserve.txt, installed on first use),
# never in .venv; nothing in `make test` needs it. FRAMEWORKS_ARGS: e.g. --step-s 5, --only ours.
bench-frameworks: setup-test model
	$(PY) -m loadtest.frameworks --models $(MODELS) --name $(MODEL_NAME) $(FRAMEWORKS_ARGS)

# CLUSTER_ARGS: e.g. --replicas 2, --audit-url sqlite, or server flags after `--`.
cluster: setup-test model
	$(PY) -m loadtest.cluster up --models $(MODELS) --model-name $(MODEL_NAME) $(CLUSTER_ARGS)

cluster-down:
	$(PY) -m loadtest.cluster down

chaos: setup-test model
	for scenario in kill rolling rollout scaleout; do \
	  $(PY) -m loadtest.chaos $$scenario --models $(MODELS) --model-name $(MODEL_NAME) $(CHAOS_ARGS) || exit 1; done

# Opt-in int8 (docs/retraining.md#optional-int8): adds model.int8.onnx and its evaluation to a
# version; served only with --model-engine onnx_int8 or --model-prefer-int8 true.
# QUANTIZE_ARGS: e.g. --auc-margin 0.002 --calibration-images 400.
quantize: setup
	$(PY) -m training quantize $(VERSION_DIR) --models $(MODELS) --name $(MODEL_NAME) $(QUANTIZE_ARGS)

# moderation_api/ holds only generated code (git-ignored); proto/ is the source and stays.
clean:
	rm -rf $(VENV) moderation_api build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache
