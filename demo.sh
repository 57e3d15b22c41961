#!/usr/bin/env bash
# The kit's main job on the embedded synthetic demo, start to finish:
# set up, generate the demo data, train 2 seeds, predict WBC2 with TTA, ensemble, check submission.csv,
# and write the lab report (runs/report.html: open it in a browser).
# The seeds train 5 of the --demo preset's 8 epochs, so that the whole demo stays within 10 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
PY="$VENV/bin/python"
start=$(date +%s)
"$PY" -m submission.demo --dest demo --if-stale  # regenerates demo data of another version
for seed in 0 1; do
  "$PY" train.py --demo --epochs 5 --seed "$seed" --overwrite
done
"$PY" infer.py --tta --labels demo/labels
"$PY" ensemble.py --labels demo/labels --plot runs/ensemble.png --report runs/report.html
"$PY" ensemble.py --check submission.csv
echo "demo finished in $(( $(date +%s) - start ))s after installation: submission.csv, and the lab report runs/report.html"
