"""``python -m powerd.agent`` runs powerd-agent."""

import sys

from powerd.agent.cli import main

sys.exit(main())
