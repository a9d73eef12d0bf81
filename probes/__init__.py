"""Probes: one folder per power source, each yielding Blocks in SI units.

A probe family is registered under the ``powerd.probes`` entry point. Its ``available()`` says
whether this host has the source (missing is not an error, broken is), and ``open(args)`` returns a
Probe for a spec such as ``sim:square,high=10``. Vendor libraries are imported only inside a family.
Probes import nothing from powerd's I/O side.
"""
