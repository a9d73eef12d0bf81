"""``powerd verify``: run a workload under a protocol and give a verdict on each claim.

``protocol`` reads and checks the protocol file, ``stability`` decides when power has settled,
``verdict`` turns the trials' figures and their 95 % intervals into verdicts, ``render`` shows
them (terminal and HTML). The orchestration (probes, markers, CMD) is ``powerd.commands.verify``.
"""
