#!/usr/bin/env bash
# Editable install of every package with pip (uv would resolve a CUDA torch; see constraints.txt).
# Listing all packages in one command makes pip take the siblings from here, not from an index.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -c constraints.txt \
    -e "packages/core[all,testing]" \
    -e packages/prior-next3d \
    -e packages/encoders \
    -e packages/aggregators \
    -e "packages/faceverse[mediapipe]"
