"""The MediaPipe landmark detector keeps MediaPipe's native log lines out of the command's output."""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mediapipe") is None, reason="mediapipe (the [mediapipe] extra) is not installed"
)


def test_detector_prints_nothing_to_stderr():
    # A fresh process: MediaPipe logs its TFLite/absl lines once per process, at the first graph.
    code = (
        "import numpy as np\n"
        "from invertavatar_faceverse.mediapipe_detector import MediaPipeLandmarkDetector\n"
        "detector = MediaPipeLandmarkDetector()\n"
        "print(detector.detect(np.zeros((96, 96, 3), np.uint8)))\n"
        "detector.close()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"  # no face in a black image
    assert done.stderr == ""
