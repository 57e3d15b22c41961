#!/usr/bin/env bash
# A SLURM array: one seed per task, requeued jobs continue with --resume; then one ensemble job.
#
#   jid=$(sbatch --parsable --array=0-4 scripts/slurm_seeds.sh --data-root data)
#   sbatch --dependency=afterok:$jid scripts/slurm_ensemble.sh
#
#SBATCH --job-name=wbc-seed
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00
#SBATCH --requeue
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
seed=${SLURM_ARRAY_TASK_ID:?run as an array job}
if [ -f "runs/seed$seed/last.pt" ]; then
  python train.py --seed "$seed" --resume "$@"     # requeued (preempted, timed out): continue the run
else
  python train.py --seed "$seed" "$@"
fi
