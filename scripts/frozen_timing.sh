#!/usr/bin/env bash
# Time frozen-feature training with a DinoBloom-S-format file at 224 px on the demo data, from cold caches:
# seed 0 (kit recipe), seed 1 (seed recipe: MDD, target views), seed 2 (warm cache), then infer.py --tta.
# Without a real DinoBloom-S.pth (WEIGHTS=...), a file of random weights in its format is written: the times
# are real, the scores are not.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs-frozen}
WEIGHTS=${WEIGHTS:-$OUT/DinoBloom-S-random.pth}
rm -rf "$OUT/runs" "$OUT/cache" && mkdir -p "$OUT"
[ -f "$WEIGHTS" ] || "$PY" -c "import sys; sys.path.insert(0, 'tests'); from backbone_files import write_dinobloom; write_dinobloom('$WEIGHTS', 'S')"
"$PY" -m submission.demo --dest demo --if-stale
lscpu | grep 'Model name' || true
common=(--demo --image-size 224 --runs "$OUT/runs" --cache-dir "$OUT/cache" --backbone timm:vit_small_patch14_dinov2
        --weights "$WEIGHTS" --freeze-backbone)
start=$(date +%s)
"$PY" train.py "${common[@]}" --seed 0
t1=$(date +%s); echo "TIME seed 0, kit recipe, cold caches (image cache + feature extraction + 8 epochs): $((t1-start)) s"
"$PY" train.py "${common[@]}" --seed 1 --recipe seed
t2=$(date +%s); echo "TIME seed 1, seed recipe (MDD; the target's 1 + 4 views extracted, the sources' read): $((t2-t1)) s"
"$PY" train.py "${common[@]}" --seed 2
t3=$(date +%s); echo "TIME seed 2, kit recipe, warm cache: $((t3-t2)) s"
"$PY" infer.py "$OUT/runs/seed0" --tta --submission "$OUT/submission.csv" --no-estimate
t4=$(date +%s); echo "TIME infer.py --tta on WBC2 (240 images x 8 views through the ViT): $((t4-t3)) s"
