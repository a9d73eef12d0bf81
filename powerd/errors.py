"""User-facing errors: one line that says what went wrong and what to do.

The CLI prints ``str(err)`` of any PowerdError and exits non-zero without a traceback.
"""


class PowerdError(Exception):
    """An error a user can act on; its message is shown as is."""


class SpecError(PowerdError):
    """A probe spec or option value that cannot be understood."""


class MarkerError(PowerdError):
    """A marker that is not valid per contract 1, or does not fit the phase state."""


class ProbeUnavailable(PowerdError):
    """A probe that is valid but cannot run on this host (absent, no permission, broken)."""
