"""A BMC that answers DCMI Get Power Reading over IPMI 2.0 (RMCP+) on 127.0.0.1, for tests.

Built on pyghmi's BMC server (``pyghmi.ipmi.bmc.Bmc``), so the real ``ipmitool -I lanplus``
can talk to it. ``python dcmi_bmc.py PORT USER PASSWORD STATE_FILE``: each reading is taken
from STATE_FILE (``<watts>`` or ``<watts> deactivated``). The response follows DCMI 1.5
§6.6.1: group id 0xDC, current/min/max/average W (16-bit LE), timestamp (32-bit), period in
ms (32-bit), state byte (bit 6 = measurement active).
"""

import struct
import sys
import time
from pathlib import Path

from pyghmi.ipmi import bmc

NETFN_DCGRP, CMD_GET_POWER_READING = 0x2C, 0x02


class DcmiBmc(bmc.Bmc):
    def __init__(self, authdata, port, state_file):
        super().__init__(authdata, port=port, address="127.0.0.1")
        self.state_file = state_file

    def get_power_state(self):
        return "on"

    def handle_raw_request(self, request, session):
        if request["netfn"] == NETFN_DCGRP and request["command"] == CMD_GET_POWER_READING:
            text = Path(self.state_file).read_text().split()
            watts = int(text[0])
            state = 0x00 if "deactivated" in text else 0x40
            data = struct.pack(
                "<BHHHHIIB",
                0xDC,
                watts,
                max(0, watts - 10),
                watts + 10,
                watts,
                int(time.time()),
                1000,
                state,
            )
            return session.send_ipmi_response(data=list(data))
        return super().handle_raw_request(request, session)


if __name__ == "__main__":
    port, user, password, state = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    DcmiBmc({user: password}, port, state).listen()
