"""Training fixtures: the tiny experiment helpers of tests/pipeline are importable here too."""

import sys
from pathlib import Path

# One definition of the tiny experiment for both test folders (tests/pipeline/tiny_setup.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
