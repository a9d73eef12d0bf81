"""Test-wide settings: Hypothesis explores new examples locally; in CI (``CI`` set) it is
derandomized, so a submission's CI run is repeatable and a found bug is found again locally
with ``--hypothesis-seed``. ``HYPOTHESIS_PROFILE=thorough`` runs many more examples."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
if profile:
    settings.load_profile(profile)
