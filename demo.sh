#!/usr/bin/env bash
# The kit's main job on the embedded synthetic demo, start to finish:
# set up, generate the demo data, train 2 seeds, predict WBC2 with TTA, ensemble, check submission.csv,
# write the lab report (runs/report.html: open it in a browser) and the run record (runs/demo_record.json).
# The seeds train 5 of the --demo preset's 8 epochs, so that the whole demo stays within 10 minutes on 2 CPU cores.
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
  step "train_seed$seed" "$PY" train.py --demo --epochs 5 --seed "$seed" --overwrite
done
step infer "$PY" infer.py --tta --labels demo/labels
step ensemble "$PY" ensemble.py --labels demo/labels --plot runs/ensemble.png --report runs/report.html
"$PY" ensemble.py --check submission.csv
echo "total $(( $(date +%s) - start ))" >> "$timings"
"$PY" -m submission.demo.record --runs runs --labels demo/labels --timings "$timings" --dest runs/demo_record.json
echo "demo finished in $(( $(date +%s) - start ))s after installation: submission.csv, the lab report runs/report.html, the record runs/demo_record.json"
