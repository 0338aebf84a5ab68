"""`python -m experiment.benchmark`: the same as `python -m experiment benchmark`."""

import sys

from experiment.benchmark import main

sys.exit(main())
