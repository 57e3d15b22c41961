#!/usr/bin/env bash
# One short GPU check (about 5 minutes on an H100): the benchmark on CUDA, plain fp32 eager vs the
# kit's settings (bf16 autocast + channels_last), then once more with torch.compile.
#
# A GPU machine without a package registry needs the wheels that its Python lacks, fetched here
# (Python 3.12, x86-64) into .whl/ (kept out of git by .git/info/exclude):
#   for p in albumentations==2.0.8 albucore==0.0.24 pydantic==2.14.4 pydantic-core==2.50.5 \
#            annotated-types==0.7.0 typing-inspection==0.4.2 simsimd stringzilla; do
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
#   done
# Then run this script there with .whl carried along; results go to $OUT (default: here).
set -euo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
OUT=${OUT:-.}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m studies.bench --device cuda --steps 40 --images 16 --min-seconds 1 --json "$OUT/bench_gpu.json"
python3 -m studies.bench --device cuda --steps 40 --images 4 --min-seconds 0.3 --compile --json "$OUT/bench_gpu_compile.json"
