#!/usr/bin/env bash
# Encoder stages 1 -> 2 -> 3 one after the other (each resumes from its run folder if interrupted).
# Usage (from the repository root):
#   nohup nice -n 19 env OMP_NUM_THREADS=1 bash recipes/run_stages.sh > recipes/logs/stages.log 2>&1 &
set -euo pipefail
cli=.venv/bin/invertavatar
"$cli" train latent --config recipes/configs/stage1-latent.yaml --no-progress
"$cli" train oneshot --config recipes/configs/stage2-oneshot.yaml --no-progress
"$cli" train incremental --config recipes/configs/stage3-incremental.yaml --no-progress
