"""The agent's spool on a failing disk: a full tmpfs, the size bound (WAL included), a read-only or
uncreatable directory, and an agent SIGKILLed with a backlog. Real parts: tmpfs mounts (root
only), real mosquitto, the agent as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from powerd.agent import wire
from powerd.agent.spool import Spool
from tests.agent.agentproc import RATE_HZ, agent_process, running_agent, write_config
from tests.agent.test_mqtt_e2e import post, subscribe, truth_j
from tests.servers import Mosquitto, mosquitto, running_daemon, wait_for

AGENT = "edge-sp"
TOPIC = wire.blocks_topic(AGENT)
FAST_HZ = 2000


def block_msg(boot: int, seq: int, t0_ns: int, n: int = 500) -> bytes:
    t = t0_ns + np.arange(n, dtype=np.int64) * 1_000_000
    return wire.encode_block(boot, seq, "sim:x", t, np.random.default_rng(seq).random(n))


def on_disk_bytes(path: Path) -> int:
    return sum(
        os.stat(f"{path}{s}").st_size for s in ("", "-wal", "-shm") if Path(f"{path}{s}").exists()
    )


@contextlib.contextmanager
def tmpfs(path: Path, size: str, options: str = "") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the test is about a real full/read-only disk)")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=False)
    if done.returncode != 0:
        pytest.skip("mount -t tmpfs is not permitted here (no CAP_SYS_ADMIN)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(dirpath: Path) -> Path:
    """Fill a filesystem to the last byte with one file; returns it (delete it to free space)."""
    filler = dirpath / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def test_size_bound_counts_the_wal_and_reports_every_drop(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 300_000, agent=AGENT, log=lambda _: None)
    sent = []
    for seq in range(1, 120):
        payload = block_msg(7, seq, seq * 1_000_000_000)
        sent.append(payload)
        spool.put_many([(TOPIC, payload, 1, False)])
        assert on_disk_bytes(path) <= 300_000 + 64_000, "the WAL and shm are not in the bound"
    assert spool.state == "full" and spool.dropped_blocks > 0
    msgs = spool.peek(10_000)
    gaps = [
        g for m in msgs if m.topic == wire.gaps_topic(AGENT) for g in wire.decode_gaps(m.payload)
    ]
    kept = {wire.decode_block(m.payload).seq for m in msgs if m.topic == TOPIC}
    dropped = [seq for seq in range(1, 120) if seq not in kept]
    assert sum(g.samples for g in gaps) == 500 * len(dropped) == spool.dropped_samples
    # the reported extents are exactly the dropped blocks' first and last stamps
    covered = sorted((g.t_first_ns, g.t_last_ns) for g in gaps)
    assert covered[0][0] == dropped[0] * 1_000_000_000
    assert covered[-1][1] == dropped[-1] * 1_000_000_000 + 499 * 1_000_000
    # acknowledging empties the spool and the WAL is truncated
    spool.ack_many(msgs)
    assert len(spool) == 0 and not Path(f"{path}-wal").stat().st_size
    spool.close()


@pytest.mark.parametrize("bound", [100_000, 110_000])
def test_an_ack_for_a_message_dropped_at_the_bound_never_deletes_a_newer_one(
    tmp_path: Path, bound: int
) -> None:
    """The publisher acks what it peeked; meanwhile the bound dropped it and a newer message
    was written. SQLite would give the newer one the freed id, and the ack would delete it."""
    spool = Spool(tmp_path / "spool.db", bound, agent=AGENT, log=lambda _: None)
    lost = []
    for seq in range(1, 30):
        in_flight = spool.peek(1000)
        spool.put_many([(TOPIC, block_msg(7, seq, seq * 10**9, n=2000), 1, False)])
        queued = [wire.decode_block(m.payload).seq for m in spool.peek(1000) if m.topic == TOPIC]
        spool.ack_many(in_flight)
        left = [wire.decode_block(m.payload).seq for m in spool.peek(1000) if m.topic == TOPIC]
        if seq in queued and seq not in left:
            lost.append(seq)
    assert spool.dropped_blocks > 0 and lost == []
    spool.close()


def test_a_full_disk_keeps_sampling_in_memory_and_recovers(tmp_path: Path) -> None:
    logged: list[str] = []
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spool = Spool(disk / "spool.db", 256 << 20, agent=AGENT, log=logged.append)
        spool.put_many([(TOPIC, block_msg(7, 1, 0), 1, False)])
        filler = fill(disk)
        for seq in range(2, 40):
            spool.put_many([(TOPIC, block_msg(7, seq, seq * 10**9), 1, False)])
        assert spool.state == "full" and spool.snapshot()["memory_queued"] > 0
        assert len([x for x in logged if "spool_full" in x]) == 1, logged
        # everything is still there, in order, for the publisher
        msgs = spool.peek(100)
        assert [wire.decode_block(m.payload).seq for m in msgs] == list(range(1, 40))
        spool.ack_many(msgs[:5])
        filler.unlink()
        spool._retry_at_s = 0.0  # do not wait RETRY_S in a test
        spool.put_many([(TOPIC, block_msg(7, 40, 40 * 10**9), 1, False)])
        assert spool.state == "ok" and spool.snapshot()["memory_queued"] == 0
        assert [wire.decode_block(m.payload).seq for m in spool.peek(100)] == list(range(6, 41))
        assert any("writable again" in x for x in logged)
        spool.close()


def test_an_agent_restarted_on_a_full_disk_starts_and_keeps_its_backlog(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        first = Spool(disk / "spool.db", 256 << 20, agent=AGENT, log=lambda _: None)
        first.put_many([(TOPIC, block_msg(7, seq, seq * 10**9), 1, False) for seq in range(1, 9)])
        fill(disk)  # and the process is killed: the spool is never closed
        second = Spool(disk / "spool.db", 256 << 20, agent=AGENT, log=lambda _: None)
        second.put_many([(TOPIC, block_msg(8, 1, 10**12), 1, False)])
        assert second.state == "full"
        assert second.next_counter("marker_seq") > 0
        seqs = [(b.boot_ns, b.seq) for m in second.peek(100) for b in wire.decode_blocks(m.payload)]
        assert seqs == [(7, s) for s in range(1, 9)] + [(8, 1)]
        second.close()
        first.close()


def test_memory_queue_bound_drops_are_reported_too(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        spool = Spool(
            disk / "spool.db", 256 << 20, agent=AGENT, memory_max_bytes=50_000, log=lambda _: None
        )
        fill(disk)
        for seq in range(1, 30):
            spool.put_many([(TOPIC, block_msg(7, seq, seq * 10**9), 1, False)])
        snap = spool.snapshot()
        assert snap["memory_bytes"] <= 60_000 and snap["dropped_blocks"] > 0
        gaps = [
            g
            for m in spool.peek(1000)
            if m.topic == wire.gaps_topic(AGENT)
            for g in wire.decode_gaps(m.payload)
        ]
        assert sum(g.samples for g in gaps) == snap["dropped_samples"]
        spool.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerd.agent", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_uncreatable_spool_dir_is_one_clear_error_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    done = run_cli(
        "--probe", "sim:const,value=1", "--no-http", "--spool-dir", f"{tmp_path}/a-file/spool"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("powerd-agent: error: spool directory"), lines


def test_read_only_spool_dir_is_one_clear_error_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        done = run_cli("--probe", "sim:const,value=1", "--no-http", "--spool-dir", str(ro))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0], lines
    assert lines[0].startswith("powerd-agent: error: spool directory")


# --- end to end with the daemon and mosquitto ------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path) as b:
        yield b


def spooled_blocks(db: Path) -> list[wire.BlockMessage]:
    """Block messages waiting in a (killed) agent's spool."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT topic, payload FROM outbox ORDER BY id").fetchall()
    finally:
        con.close()
    return [b for t, p in rows if "/blocks/" in t for b in wire.decode_blocks(bytes(p))]


def stored_block(
    t: np.ndarray, w: np.ndarray, b: wire.BlockMessage, offset_ns: int, uncertainty_ns: int
) -> bool:
    """Whether every sample of ``b`` is in the store (``t``, ``w`` in daemon time): a run of
    ``b``'s length with its values and its spacing (within 1 ms of drift), starting within the
    clock estimate's uncertainty of ``b``'s first sample. Matched by values and spacing, not by
    counting samples in the window: on a loaded machine the uncertainty can exceed the sample
    period, and the window then also holds the neighbouring blocks' edge samples."""
    n = b.t_ns.size
    t0 = int(b.t_ns[0]) + offset_ns
    lo = int(np.searchsorted(t, t0 - uncertainty_ns - 1_000_000, side="left"))
    hi = int(np.searchsorted(t, t0 + uncertainty_ns + 1_000_000, side="right"))
    for j in range(lo, min(hi, t.size - n + 1)):
        shift = t[j : j + n] - b.t_ns
        if np.array_equal(w[j : j + n], b.value) and int(np.ptp(shift)) <= 1_000_000:
            return True
    return False


def test_agent_killed_with_a_backlog_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent_id = "edge-backlog"
    spool_dir = tmp_path / "spool"
    cid = f"{agent_id}/sim:square"
    with running_daemon(tmp_path, broker) as daemon:
        with running_agent(tmp_path, broker, agent_id, kill=True, spool_dir=spool_dir) as url:
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges",
            )
            post(url, {"v": 1, "run": "backlog", "phase": "p", "event": "begin"})
            time.sleep(0.5)
            broker.stop(kill=True)
            time.sleep(1.5)
        backlog = spooled_blocks(spool_dir / "spool.db")
        assert sum(b.t_ns.size for b in backlog) > RATE_HZ, "no backlog to test with"
        with running_agent(tmp_path, broker, agent_id, kill=True, spool_dir=spool_dir) as url:
            time.sleep(1.0)
            broker.start()
            wait_for(lambda: len(daemon.offsets[agent_id].exchanges) >= 5, what="new boot")
            post(url, {"v": 1, "run": "backlog", "phase": "p", "event": "end", "count": 1})
            result = wait_for(lambda: daemon.run_result("backlog"), what="result")
            daemon.store.flush()
            t, w = daemon.store.samples(cid, 0, 2**62)
            stored_rows = daemon.store.sample_count()  # samples() merges exact repeats
            epochs = dict(daemon._epochs)
    assert stored_rows == t.size == np.unique(t).size, "a block was stored twice"
    for b in backlog:
        est = epochs[(agent_id, b.boot_ns)].estimate(int(b.t_ns[-1]))
        assert est is not None
        assert stored_block(t, w, b, est.offset_ns, est.uncertainty_ns), (
            f"block {b.seq} of the spool never reached the store whole"
        )
    (phase,) = result["phases"]
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]


def test_spool_on_a_full_tmpfs_keeps_sampling_and_says_so(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent_id = "edge-full"
    cid = f"{agent_id}/sim:square"
    statuses: list[dict[str, object]] = []
    with tmpfs(tmp_path / "disk", "1m") as disk, running_daemon(tmp_path, broker) as daemon:
        conf = write_config(tmp_path / "a.toml", agent_id, broker.port, disk)
        with agent_process(conf, tmp_path / "agent.log") as (proc, url):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges",
            )
            filler = fill(disk)
            post(url, {"v": 1, "run": "full", "phase": "p", "event": "begin"})
            wait_for(
                lambda: (daemon.agents[agent_id].get("spool") or {}).get("state") == "full",
                what="status spool_full",
            )
            statuses.append(dict(daemon.agents[agent_id]))
            assert daemon.health.is_down(f"agent:{agent_id}:spool")
            time.sleep(1.0)
            post(url, {"v": 1, "run": "full", "phase": "p", "event": "end", "count": 1})
            result = wait_for(lambda: daemon.run_result("full"), what="result")
            assert proc.poll() is None, "the agent died on a full disk"
            filler.unlink()
            wait_for(
                lambda: (daemon.agents[agent_id].get("spool") or {}).get("state") == "ok",
                what="status spool ok again",
            )
            daemon.store.flush()
            t, _ = daemon.store.samples(cid, result["phases"][0]["t_begin_ns"], 2**62)
    (phase,) = result["phases"]
    step = 1_000_000_000 // RATE_HZ
    inside = t[t <= phase["t_end_ns"]]
    holes = np.flatnonzero(np.diff(inside) > 1.5 * step)
    where = [(int(inside[i]) - phase["t_begin_ns"], int(inside[i + 1] - inside[i])) for i in holes]
    print(
        "holes (ns after begin, width):",
        where,
        "phase ns:",
        phase["t_end_ns"] - phase["t_begin_ns"],
    )
    assert int(np.diff(inside).max()) < 1.5 * step, "sampling stopped on the full disk"
    assert np.unique(t).size == t.size
    ch = phase["channels"][cid]
    assert ch["coverage"] == 1.0 and "agent_dropped" not in ch["flags"]
    assert abs(phase["energy_j"] - truth_j(phase)) <= phase["uncertainty_j"]
    spool = statuses[0]["spool"]
    assert isinstance(spool, dict) and "full" in str(spool["error"]).lower()
    log = (tmp_path / "agent.log").read_text()
    assert log.count("spool_full") == 1, log


@contextlib.contextmanager
def daemon_presence(port: int) -> Iterator[tuple[str, paho.Client]]:
    """The running daemon's retained presence topic, and a client to publish on it."""
    client, got = subscribe(port, f"{wire.TOPIC_ROOT}/daemons/+")
    try:
        (topic, _), *_ = wait_for(lambda: got, what="the daemon's presence")
        yield topic, client
    finally:
        client.loop_stop()
        client.disconnect()


def test_drops_at_the_bound_are_flagged_exactly_in_the_result(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent_id = "edge-bound"
    cid = f"{agent_id}/sim:square"
    with running_daemon(tmp_path, broker) as daemon:
        conf = write_config(
            tmp_path / "a.toml",
            agent_id,
            broker.port,
            tmp_path / "spool",
            spool_max_mb=0.1,
            rate_hz=FAST_HZ,
        )
        with agent_process(conf, tmp_path / "agent.log") as (_, url):
            wait_for(
                lambda: (o := daemon.offsets.get(agent_id)) and len(o.exchanges) >= 5,
                what="clock exchanges",
            )
            post(url, {"v": 1, "run": "bound", "phase": "p", "event": "begin"})
            time.sleep(0.3)
            # the daemon "goes away" (its retained presence says offline): the agent spools;
            # the broker stays up, so nothing it already acknowledged can be lost there
            with daemon_presence(broker.port) as (topic, client):
                client.publish(topic, json.dumps({"state": "offline"}), qos=1, retain=True)
                time.sleep(5.0)  # ~24 kB/s of samples against a 100 kB bound
                client.publish(topic, json.dumps({"state": "online"}), qos=1, retain=True)
            wait_for(lambda: daemon.counts["agent_dropped_samples"] > 0, what="gap report")
            post(url, {"v": 1, "run": "bound", "phase": "p", "event": "end", "count": 1})
            wait_for(lambda: daemon.run_result("bound"), what="result")

            def all_reported() -> bool:  # drop reports can trail the result: it is recomputed
                spool = daemon.agents.get(agent_id, {}).get("spool") or {}
                told = spool.get("dropped_samples")
                return told == daemon.counts["agent_dropped_samples"] and not daemon.has_pending()

            wait_for(all_reported, what="every drop reported and the result recomputed")
            result = daemon.run_result("bound")
            assert result is not None
            daemon.store.flush()
            (phase,) = result["phases"]
            t, _ = daemon.store.samples(cid, phase["t_begin_ns"], phase["t_end_ns"])
            gaps = daemon.store.gaps(cid, phase["t_begin_ns"], phase["t_end_ns"])
            placed = daemon.gap_edges.placed(cid)
    ch = phase["channels"][cid]
    assert "agent_dropped" in ch["flags"] and "agent_dropped" in phase["flags"]
    assert gaps and all(r == "agent_dropped" for _, _, r in gaps)
    # stored samples and the flagged gaps tile the phase: nothing missing that is not flagged
    step = 1_000_000_000 // FAST_HZ
    merged: list[list[int]] = []  # successive drops are reported one after another
    for g0, g1, _ in gaps:
        assert g1 is not None
        if merged and g0 - merged[-1][1] < 1.5 * step:
            merged[-1][1] = g1
        else:
            merged.append([g0, g1])
    for g0, g1 in merged:
        assert not np.any((t >= g0) & (t <= g1)), "a flagged gap holds stored samples"
        before, after = t[t < g0], t[t > g1]
        assert before.size and g0 - before[-1] < 1.5 * step
        assert after.size and after[0] - g1 < 1.5 * step
    holes = np.diff(t) > 1.5 * step
    # A seam between two blocks placed with different clock estimates (each block is moved onto
    # the daemon's clock with the estimate of its arrival) widens by the estimate's change:
    # not missing data, so not a hole, when the seam minus that change is one sample period.
    ends = {last: off for _, last, off in placed}
    starts = {first: off for first, _, off in placed}
    for i in np.flatnonzero(holes):
        a, b = int(t[i]), int(t[i + 1])
        if a in ends and b in starts and b - a - (starts[b] - ends[a]) < 1.5 * step:
            holes[i] = False
    where = [(int(t[i]) - phase["t_begin_ns"], int(t[i + 1] - t[i])) for i in np.flatnonzero(holes)]
    flagged = [(g0 - phase["t_begin_ns"], g1 - g0) for g0, g1 in merged]
    assert holes.sum() == len(merged), (
        f"a hole in the data is not flagged: holes (ns into the phase, length) {where}, "
        f"flagged {flagged}, raw gaps {gaps}"
    )
    assert json.dumps(ch["gaps"])  # exposed in the result
