"""`python -m experiment ...` (and `torchrun -m experiment ...`): wires to the CLI."""

import sys

from experiment.cli import main

if __name__ == "__main__":
    sys.exit(main())
