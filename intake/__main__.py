"""``python -m intake serve ...`` and ``python -m intake new-key ...``."""

import sys

from intake.cli import main

sys.exit(main(sys.argv[1:]))
