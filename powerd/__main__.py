"""``python -m powerd`` runs the command line."""

import sys

from powerd.cli import main

sys.exit(main())
