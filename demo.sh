#!/usr/bin/env bash
# The kit's main job on the embedded synthetic demo, start to finish:
# set up, generate the demo data, train 2 seeds, predict WBC2 with TTA, ensemble, check submission.csv,
# write the lab report (runs/report.html: open it in a browser) and the run record (runs/demo_record.json);
# then a lab's few labels: the WBC1 report (runs/label_WBC1.html) asks for 55 cells, a simulated labeller
# answers them from the demo's known labels, the kit checks the model with them and teaches seed 0 with them.
# The same weights re-targeted without adaptation (runs-source-only/) give the paired comparison in the record.
# The seeds train 4 of the --demo preset's 8 epochs and the teaching 3 x 40 steps (the kit's default: 3 x 100),
# so that the whole demo stays within 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
PY="$VENV/bin/python"
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
step generate "$PY" -m submission.demo --dest demo --if-stale  # regenerates demo data of another version
for seed in 0 1; do
  step "train_seed$seed" "$PY" train.py --demo --epochs 4 --seed "$seed" --overwrite
done
step infer "$PY" infer.py --tta --truth demo/labels
step ensemble "$PY" ensemble.py --truth demo/labels --plot runs/ensemble.png --report runs/report.html --ask 0
"$PY" ensemble.py --check submission.csv
echo "== The same weights without adaptation (the target normalised with the sources' statistics): a paired comparison =="
for seed in 0 1; do
  step "paired_seed$seed" "$PY" train.py --init "runs/seed$seed" --epochs 0 --target-norm source --runs runs-source-only \
    --overwrite
done
step paired_infer "$PY" infer.py --runs runs-source-only --tta --truth demo/labels
"$PY" ensemble.py --runs runs-source-only --submission runs-source-only/submission.csv --truth demo/labels
echo "== A lab's few labels: runs/label_WBC1.html asks for 55 WBC1 cells; a SIMULATED labeller answers them =="
echo "== from the demo's known labels (a hematologist would click them in the page and download labels.csv) =="
step label_ask "$PY" infer.py --split WBC1 --tta
"$PY" ensemble.py --split WBC1 --report runs/label_WBC1.html --ask 55
"$PY" -m submission.demo.labeller runs/asked_WBC1.csv --truth demo/labels --out runs/labels.csv
step check "$PY" ensemble.py --split WBC1 --labels runs/labels.csv
step teach "$PY" train.py --labels runs/labels.csv --init runs/seed0 --iters-per-epoch 40 --overwrite
step taught_infer "$PY" infer.py --runs runs-taught --tta --truth demo/labels --submission runs-taught/submission.csv
"$PY" infer.py --runs runs-taught --split WBC1 --tta --labels runs/labels.csv --submission runs-taught/submission_WBC1.csv
echo "total $(( $(date +%s) - start ))" >> "$timings"
"$PY" -m submission.demo.record --runs runs --truth demo/labels --taught runs-taught --paired runs-source-only \
  --timings "$timings" --dest runs/demo_record.json
echo "demo finished in $(( $(date +%s) - start ))s after installation: submission.csv, the lab reports runs/report.html"\
  "and runs/label_WBC1.html, the record runs/demo_record.json"
