"""The PowerShield probe the sampler polls: a ``SerialReader`` thread runs the session, ``read``
hands over what it gathered. Nothing here touches the port."""

from __future__ import annotations

from powerd.channel import Channel, Instrument
from powerd.probes.lpm01a.config import LpmConfig
from powerd.probes.lpm01a.session import LpmState
from powerd.probes.serialport import SerialProbe

CLOSE_TIMEOUT_S = 8.0


class LpmProbe(SerialProbe):
    """One PowerShield: one channel, power (W) or an energy counter (J)."""

    close_timeout_s = CLOSE_TIMEOUT_S

    def __init__(self, cfg: LpmConfig, channel: Channel) -> None:
        self.cfg = cfg
        self.channel = channel
        self.state = LpmState(cfg)
        super().__init__(
            [channel],
            channel.id,
            cfg.url,
            self.state.session,
            {"baudrate": cfg.baud, "timeout": 0.05},
        )
        self.poll_interval_s = 0.05 if cfg.rate_hz >= 100 else 0.2

    def instrument(self) -> Instrument | None:
        """The shield's identity once its session asked (None before)."""
        return self.state.instrument
