#!/usr/bin/env bash
# Editable install of every package with pip (uv would resolve a CUDA torch; see constraints.txt).
# Listing all packages in one command makes pip take the siblings from here, not from an index.
set -euo pipefail
cd "$(dirname "$0")/.."
# The pip bundled with Python 3.11 (23.2) fails on the sibling extras with a false "no matching distribution".
python -m pip install --quiet --upgrade pip
python -m pip install -c constraints.txt \
    -e "packages/core[all,testing]" \
    -e packages/prior-next3d \
    -e packages/encoders \
    -e packages/aggregators \
    -e "packages/faceverse[mediapipe]"
