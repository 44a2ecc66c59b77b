"""`python -m deeprl ...` runs the `deeprl` command (for environments where the console script is not on PATH)."""

import sys

from deeprl.cli import main

sys.exit(main())
