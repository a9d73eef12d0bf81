"""The ``powerd`` subcommands, one module each; ``powerd.cli`` is their only entry.

Each module is imported by ``powerd.cli`` when its command runs, so a command's dependencies
(aiohttp, grafana-client, the probes) load only for that command."""
