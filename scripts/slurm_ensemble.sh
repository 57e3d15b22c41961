#!/usr/bin/env bash
# Runs after every seed of scripts/slurm_seeds.sh succeeded (sbatch --dependency=afterok:JOBID).
#SBATCH --job-name=wbc-ensemble
#SBATCH --gres=gpu:1
#SBATCH --time=00:30:00
set -euo pipefail
python infer.py --tta
python ensemble.py
python ensemble.py --check submission.csv
