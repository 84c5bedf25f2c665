"""``python -m invertavatar_core.cli``."""

import sys

from invertavatar_core.cli import main

sys.exit(main())
