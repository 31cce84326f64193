"""``python -m polewatch``."""

import sys

from polewatch.cli import main

sys.exit(main())
