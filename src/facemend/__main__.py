"""Allow `python -m facemend ...` (and `torchrun -m facemend train ...`)."""

import sys

from facemend.cli import main

sys.exit(main())
