#!/usr/bin/env bash
# The kit's job on the embedded synthetic demo, start to finish, in the order a lab meets it:
#  1. set up, generate the demo data, train 2 seeds (the kit's default recipe);
#  2. label-free: predict WBC2 (and WBC1) with TTA under three test-time treatments of the same runs (own: the
#     default, source, adabn), the ensemble under the default -> submission.csv, the lab report runs/report.html;
#  3. a lab's 55 cells: the WBC1 report (runs/label_WBC1.html) asks for them, a SIMULATED labeller answers from
#     the demo's known labels, the kit checks the runs with them, chooses a treatment by them (and says why),
#     rewrites submission.csv under it, and teaches seed 0 under it;
#  4. the story on one screen, with each step's seconds, in runs/demo_record.json.
# The demo's labels are read only to print scores (--truth) and by the simulated labeller for the asked cells.
# The seeds train 4 x 35 steps (the --demo preset: 8 x 50), side by side (one core each), and the teaching 3 x 30
# steps (the kit's default: 3 x 100), so that the whole demo stays within 8 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .  # the package, editable: python -m submission... works from any folder
PY="$VENV/bin/python"
TREATMENTS=own,source,adabn
start=$(date +%s)
timings=$(mktemp)
trap 'rm -f "$timings"' EXIT
step() {  # step NAME COMMAND...: run it and note its seconds for the record
  local name=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  echo "$name $(( $(date +%s) - t0 ))" >> "$timings"
}
banner() { echo; echo "== $* =="; }
banner "1. The demo data, and two seeds of the kit's default recipe"
step generate "$PY" -m submission.demo --dest demo --if-stale  # regenerates demo data of another version
rm -f runs/adapt_choice.json  # a choice recorded by an earlier demo
side_by_side() {  # side_by_side NAME LOG1 "CMD1" LOG2 "CMD2": two commands at once, one core each (KIT_PARALLEL=2:
  # on 2 cores two one-thread processes get through about 1.8x the work of one two-thread process); then their logs
  local name=$1 t0 p1 p2
  t0=$(date +%s)
  echo "($name: two processes side by side, one core each; their output follows when both are done)"
  KIT_PARALLEL=2 bash -c "$3" > "$2" 2>&1 & p1=$!
  KIT_PARALLEL=2 bash -c "$5" > "$4" 2>&1 & p2=$!
  local rc=0
  wait "$p1" || rc=$?
  wait "$p2" || rc=$?
  tail -n 4 "$2" "$4"
  [ "$rc" = 0 ] || { echo "$name failed: see $2 and $4"; exit "$rc"; }
  echo "$name $(( $(date +%s) - t0 ))" >> "$timings"
}
mkdir -p runs
TRAIN="--demo --epochs 4 --iters-per-epoch 35 --overwrite"
side_by_side train runs/train_seed0.log "'$PY' train.py $TRAIN --seed 0" runs/train_seed1.log "'$PY' train.py $TRAIN --seed 1"
banner "2. Label-free: WBC2 and WBC1 under the treatments $TREATMENTS of the same runs; the ensemble under the default"
side_by_side infer runs/infer_WBC2.log "'$PY' infer.py --tta --adapt $TREATMENTS --truth demo/labels" \
  runs/infer_WBC1.log "'$PY' infer.py --split WBC1 --tta --adapt $TREATMENTS"
grep -A12 "WBC2, best.pt" runs/infer_WBC2.log || true
step ensemble "$PY" ensemble.py --adapt own --truth demo/labels --plot runs/ensemble.png --report runs/report.html --ask 0
"$PY" ensemble.py --check submission.csv
banner "3. A lab's 55 cells: runs/label_WBC1.html asks; a SIMULATED labeller answers from the demo's known labels"
"$PY" ensemble.py --split WBC1 --adapt own --submission runs/submission_WBC1.csv --report runs/label_WBC1.html --ask 55
"$PY" -m submission.demo.labeller runs/asked_WBC1.csv --truth demo/labels --out runs/labels.csv
banner "3b. Check the runs with the labels, choose a treatment by them, write submission.csv under it"
step check "$PY" ensemble.py --split WBC1 --labels runs/labels.csv --submission runs/submission_WBC1.csv
step choose "$PY" ensemble.py --labels runs/labels.csv --truth demo/labels --report runs/report.html --ask 0
banner "3c. Teach seed 0 with the labels, under the chosen treatment"
step teach "$PY" train.py --labels runs/labels.csv --init runs/seed0 --iters-per-epoch 30 --overwrite
side_by_side taught_infer runs/taught_WBC2.log "'$PY' infer.py --runs runs-taught --tta --truth demo/labels --submission runs-taught/submission.csv" \
  runs/taught_WBC1.log "'$PY' infer.py --runs runs-taught --split WBC1 --tta --labels runs/labels.csv --submission runs-taught/submission_WBC1.csv"
grep -A3 "checked with" runs/taught_WBC1.log || true
echo "total $(( $(date +%s) - start ))" >> "$timings"
banner "4. The story on one screen"
"$PY" -m submission.demo.record --runs runs --truth demo/labels --taught runs-taught --treatments "$TREATMENTS" \
  --timings "$timings" --dest runs/demo_record.json
echo "demo finished in $(( $(date +%s) - start ))s after installation: submission.csv, the lab reports runs/report.html"\
  "and runs/label_WBC1.html, the record runs/demo_record.json"
