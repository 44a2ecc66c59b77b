"""`python -m deeprl ...` runs the `deeprl` command (for environments where the console script is not on PATH)."""

import sys

from deeprl.cli import main

if __name__ == "__main__":  # pdoc imports this module to document it: only `python -m` runs the command
    sys.exit(main())
