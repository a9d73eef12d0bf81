"""Run reports: ``<run>.json`` (contract 2), ``<run>.csv`` (samples), ``<run>.html`` (one page)."""
