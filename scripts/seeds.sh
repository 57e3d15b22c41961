#!/usr/bin/env bash
# Train several seeds at once, one process per visible GPU, then predict and ensemble.
#
#   scripts/seeds.sh 0-4 [train.py options...]      e.g. scripts/seeds.sh 0-4 --data-root data
#   FOLDS=1 scripts/seeds.sh 0-4 [options...]        a fold ensemble: member k holds out source fold k
#                                                    (--seed k --val-fold k), so every labelled image
#                                                    trains all members but one
#
# RUNS (default runs) and CACHE_DIR (default cache) go to train.py, infer.py and ensemble.py alike;
# the submission is written to $RUNS/submission.csv.
#
# Seeds go to the GPUs round-robin (CUDA_VISIBLE_DEVICES); with more seeds than GPUs, each GPU
# trains its seeds one after another. Without a GPU the seeds run one after another on the CPU.
# The image cache is built once: the first process builds it, the others wait for it (a file lock).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RUNS=${RUNS:-runs}
CACHE_DIR=${CACHE_DIR:-cache}
range=${1:?usage: scripts/seeds.sh FIRST-LAST [train.py options]}
shift
seeds=$(seq "${range%-*}" "${range#*-}")
member() {  # train.py options of one member
  if [ "${FOLDS:-0}" = 1 ]; then echo "--seed $1 --val-fold $1"; else echo "--seed $1"; fi
}
gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -eq 0 ]; then
  for s in $seeds; do "$PY" train.py $(member "$s") --runs "$RUNS" --cache-dir "$CACHE_DIR" "$@"; done
else
  mkdir -p "$RUNS"
  pids=()
  for g in $(seq 0 $((gpus - 1))); do
    mine=$(for s in $seeds; do [ $(( (s - ${range%-*}) % gpus )) -eq "$g" ] && echo "$s"; done || true)
    [ -n "$mine" ] || continue
    (for s in $mine; do CUDA_VISIBLE_DEVICES=$g "$PY" train.py $(member "$s") --runs "$RUNS" --cache-dir "$CACHE_DIR" "$@" \
      > "$RUNS/train_seed$s.log" 2>&1; done) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done   # set -e: a failed seed fails the script
fi
"$PY" infer.py --tta --runs "$RUNS" --cache-dir "$CACHE_DIR"
"$PY" ensemble.py --runs "$RUNS" --submission "$RUNS/submission.csv"
