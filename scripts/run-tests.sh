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
set +e
"$venv/bin/python" -m pytest --durations=25 "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$code"
