#!/usr/bin/env bash
# Fetch, here, the wheels scripts/gpu-check.sh installs on a GPU machine with no network: the
# ones such a machine's Python 3.12 image lacks (pydantic and its needs; bitsandbytes with its
# CUDA 11.8-13.2 libraries; torchao, hqq). About 50 MB into .whl/ (git-ignored); pass that folder along with
# the checkout. Versions are the ones the test suite runs with.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  bitsandbytes==0.50.2 torchao==0.18.0 einops==0.8.2 termcolor==3.3.0
# hqq ships only a source archive (pure Python once its optional CUDA kernels are skipped).
DISABLE_CUDA=1 "$python" -m pip wheel -q --no-deps -w .whl hqq==0.2.8.post1
du -sh .whl
