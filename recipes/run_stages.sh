#!/usr/bin/env bash
# Encoder stages 1 -> 2 -> 3 one after the other (each resumes from its run folder if interrupted).
# Usage (from the repository root; step counts default to this session's CPU run, recipes/README.md):
#   nohup setsid env OMP_NUM_THREADS=1 STAGE1_STEPS=1000 bash recipes/run_stages.sh > runs/logs/stages.log 2>&1 &
set -euo pipefail
cli=.venv/bin/invertavatar
"$cli" train latent --config recipes/configs/stage1-latent.yaml --steps "${STAGE1_STEPS:-1000}" --no-progress
"$cli" train oneshot --config recipes/configs/stage2-oneshot.yaml --steps "${STAGE2_STEPS:-1000}" --no-progress
"$cli" train incremental --config recipes/configs/stage3-incremental.yaml --steps "${STAGE3_STEPS:-1000}" --no-progress
