"""Per-call cost of ``integrate`` (µs, best of 5 × 200 calls) on 1 kHz windows: constant, noisy,
a square pulse train (the coverage mixture's path) and a short window. By hand, to compare the
h29 coverage model against another checkout: ``taskset -c 1 .venv/bin/python
bench/coverage_cost.py`` here, and with ``PYTHONPATH=<other checkout>`` for the other (the
first line printed says which ``powerd`` was imported)."""

import time

import numpy as np

import powerd
from powerd.channel import Channel
from powerd.integrate import Window, integrate
from powerd.probes.sim.waveform import parse_spec

print(powerd.__file__)
step = 1_000_000
ch = Channel(id="sim:x", kind="power", source_class="meter", nominal_period_s=step / 1e9)
T0 = 1_800_000_000_000_000_000
rng = np.random.default_rng(1)
for name, spec, n in [
    ("constant 1k", "constant,w=5", 1000),
    ("noise 1k", "constant,w=5,noise=0.5", 1000),
    ("square train 1k", "square,high=10,low=2,period=0.02947,duty=0.4173", 1000),
    ("square train 10k", "square,high=10,low=2,period=0.02947,duty=0.4173", 10000),
    ("square short 30", "square,high=10,low=2,period=0.02947,duty=0.4173", 30),
]:
    wf = parse_spec(spec)
    k = np.arange(n + 3, dtype=np.int64)
    t = T0 + k * step + 123
    v = wf.waveform.power_w(t)
    if wf.noise_w:
        v = v + rng.normal(0, wf.noise_w, v.size)
    w = Window(int(t[1]) + 400_000, int(t[-2]) - 300_000)
    for _ in range(20):
        integrate(t, v, w, ch)
    best = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(200):
            integrate(t, v, w, ch)
        best.append((time.perf_counter() - t0) / 200 * 1e6)
    print(f"{name:18s} {min(best):8.1f} µs")
