"""powerd: power and energy measurement lined up with workload phases.

The core modules (channel, block, timebase, timeline, integrate, phases, results) are pure:
no clocks, no I/O. Only runner, store, report, cli (and later markers, sinks, api) touch the world.
"""

__version__ = "0.1.0"
