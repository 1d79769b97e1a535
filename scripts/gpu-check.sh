#!/usr/bin/env bash
# The GPU check: the GPU tests (torchao and HQQ among them), then the fp16 / bf16 / int8 / nf4 table on Llama-2-7B's layer
# shapes (benchmarks/gpu_table.py). Runs from the checkout with the machine's own Python (3.11 or
# newer), CUDA build of torch and transformers, through PYTHONPATH; no network; it installs
# nothing but the wheels in .whl/ (what such a machine lacks: pydantic and a CUDA bitsandbytes,
# fetched here beforehand by scripts/gpu-check-wheels.sh), into a temporary folder.
#
#   bash scripts/gpu-check.sh                  # results under $OUT, else gpu-check-out/
#   LAYERS=16 bash scripts/gpu-check.sh        # fewer layers when time is short (32: the 7B)
#   GPU_TABLE_ARGS="--tiny" LAYERS=1 bash scripts/gpu-check.sh   # the script itself, any machine
#   WHEELS=DIR: the wheels' folder (default .whl)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-gpu-check-out}
mkdir -p "$out"

site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
fi
export PYTHONPATH="$PWD:$PWD/worker:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1

"$python" - <<'PY' | tee "$out/environment.txt"
import platform

import torch
import transformers

try:
    import bitsandbytes

    bnb = bitsandbytes.__version__
except Exception as error:  # noqa: BLE001 - the check reports what it found
    bnb = f"unavailable ({error})"
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}),"
      f" transformers {transformers.__version__}, bitsandbytes {bnb}; GPU: {gpu}")
PY

status=0
began=$SECONDS
"$python" -m pytest -q -p no:cacheprovider -rs tests/worker/test_gpu.py -s 2>&1 | tee "$out/gpu-tests.log" || status=$?
echo "GPU tests: exit $status, $((SECONDS - began)) s"
began=$SECONDS
# shellcheck disable=SC2086  # GPU_TABLE_ARGS is a list of options
"$python" benchmarks/gpu_table.py --layers "${LAYERS:-32}" --out "$out" ${GPU_TABLE_ARGS:-} 2>&1 | tee "$out/gpu-table.log" || status=$?
echo "table: $((SECONDS - began)) s; the table is $out/gpu-table.md"
exit "$status"
