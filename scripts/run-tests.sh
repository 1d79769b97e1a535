#!/usr/bin/env bash
# The whole suite: lint, types, then pytest. pytest's exit code 5 (no test collected) fails too.
set -euo pipefail
venv=${VENV:-.venv}
export HF_HUB_OFFLINE=1
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/lint-imports"
"$venv/bin/mypy"
"$venv/bin/python" -m devcluster.minio --build
"$venv/bin/python" -m devcluster.kubernetes --build
"$venv/bin/python" -m devcluster.helm --build
"$venv/bin/python" -m devcluster.kubescore --build
vllm_venv=${VLLM_VENV:-.venv-vllm}
# Each pytest's exit code 5 (no test collected) is a failure too.
run_pytest() {
  set +e
  "$@"
  local code=$?
  set -e
  if [ "$code" -eq 5 ]; then
    echo "run-tests: pytest collected no tests ($*); that is a failure" >&2
    return 1
  fi
  return "$code"
}
main=0
run_pytest "$venv/bin/python" -m pytest --durations=25 "$@" || main=$?
# The vLLM tier (tests/vllm/), with the Python of the environment vLLM pins its stack in; the
# main suite's fixtures (control plane, S3) need packages that environment lacks: --noconftest.
vllm=0
if [ "$#" -eq 0 ]; then
  run_pytest "$vllm_venv/bin/python" -m pytest --noconftest -m vllm --durations=10 tests/vllm \
    || vllm=$?
fi
[ "$main" -eq 0 ] || exit "$main"
exit "$vllm"
