"""``python -m snnir.cli`` runs the command line."""

import sys

from snnir.cli import main

sys.exit(main())
