"""``python -m agent`` runs powerd-agent."""

import sys

from agent.cli import main

sys.exit(main())
