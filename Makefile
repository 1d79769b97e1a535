# The two quick-start commands: `make demo` (a local evaluation, no cluster) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1

.PHONY: setup demo test test-fast lint typecheck bench clean cluster cluster-down operator

$(VENV)/.installed: pyproject.toml scripts/setup-venv.sh
	bash scripts/setup-venv.sh $(VENV)
	touch $@

# vLLM pins its own torch and transformers: its worker lives in .venv-vllm (the vllm extra).
VLLM_VENV ?= .venv-vllm
$(VLLM_VENV)/.installed: pyproject.toml scripts/setup-vllm-venv.sh scripts/vllm-overrides.txt
	bash scripts/setup-vllm-venv.sh $(VLLM_VENV)
	touch $@

setup: $(VENV)/.installed $(VLLM_VENV)/.installed

demo: setup
	$(VENV)/bin/quanteval run manifests/examples/quickstart.yaml --local

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

typecheck: setup
	$(VENV)/bin/mypy

test: setup
	bash scripts/run-tests.sh

# The inner loop: lint, types and every test that needs neither a real model nor the control plane.
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m devcluster.minio --build
	$(VENV)/bin/python -m pytest -m "not model and not cluster and not slow" --durations=10 -q

bench: setup
	$(PY) benchmarks/engine_throughput.py
	$(PY) benchmarks/classifier_accuracy.py
	PYTHONPATH=. $(PY) benchmarks/operator_scale.py

# A real control plane on loopback (etcd, kube-apiserver, controller-manager, scheduler, and a
# test node agent) plus MinIO: `make cluster`, then `make operator`, then kubectl apply.
cluster: setup
	$(PY) -m devcluster up

cluster-down: setup
	$(PY) -m devcluster down

operator: setup
	set -a && . .cluster/operator.env && set +a && $(VENV)/bin/quanteval-operator

clean:
	rm -rf $(VENV) quanteval-out .pytest_cache .mypy_cache .ruff_cache
