#!/usr/bin/env bash
# Encoder stages 1 -> 2 -> 3 one after the other (each resumes from its run folder if interrupted).
# Usage (from the repository root; step counts default to this session's CPU run, recipes/README.md):
#   nohup setsid env OMP_NUM_THREADS=1 STAGE1_STEPS=1000 bash recipes/run_stages.sh > runs/logs/stages.log 2>&1 &
# Settings (environment): PRIOR, the frozen prior stage 1 inverts (default runs/prior-snapshot/prior); RUNS, where
# the run folders go (default runs: RUNS/stage1, RUNS/stage2, RUNS/stage3); STAGE3_CONFIG, the stage-3 recipe
# (default recipes/configs/stage3-incremental.yaml); INVERTAVATAR_THREADS, torch threads (default 1).
set -euo pipefail
cli=.venv/bin/invertavatar
runs=${RUNS:-runs}
"$cli" train latent --config recipes/configs/stage1-latent.yaml --steps "${STAGE1_STEPS:-1000}" --no-progress \
    --set training.prior_weights="${PRIOR:-runs/prior-snapshot/prior}" --out "$runs/stage1"
"$cli" train oneshot --config recipes/configs/stage2-oneshot.yaml --steps "${STAGE2_STEPS:-1000}" --no-progress \
    --set training.init_from="$runs/stage1" --out "$runs/stage2"
"$cli" train incremental --config "${STAGE3_CONFIG:-recipes/configs/stage3-incremental.yaml}" \
    --steps "${STAGE3_STEPS:-1000}" --no-progress --set training.init_from="$runs/stage2" --out "$runs/stage3"
