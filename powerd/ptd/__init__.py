"""``powerd-ptd``: a PTDaemon-compatible face for MLCommons power-dev (issue 13).

power-dev's ``server.py`` launches "PTD" with PTDaemon's argv, drives it over TCP and reads its
sample log and stdout; ``compliance/check.py`` then checks them. This package speaks that protocol
over any powerd probe, honestly: it names itself powerd (never PTDaemon, never a meter it is not),
reports 1 s means of the probe's full-rate samples, and keeps those samples and the session's
phases in powerd's own store, so ``powerd report <session>`` gives the full result.

Modules: ``argv`` (PTDaemon's command line), ``stamp`` (the timestamped stdout lines),
``aggregate`` (1 s means from any rate), ``meter`` (identity, ranges, per-sample uncertainty),
``samplelog`` (the ``-l`` log), ``protocol`` (commands and replies), ``recorder`` (store and
phases), ``server`` (the TCP loop) and ``main`` (the console script).
"""
