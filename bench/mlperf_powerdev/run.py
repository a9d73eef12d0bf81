"""Run MLCommons power-dev's own server.py, client.py and compliance checker against powerd-ptd.

Why: issue 13 is checked by driving powerd-ptd with power-dev unmodified. This script makes that
run reproducible by hand (never in CI; power-dev's code is never copied into this repository):

1. takes a power-dev checkout (a directory, or a git dir such as the `fetch` tool's mirror, which
   is exported with `git archive` into the work directory);
2. starts a local NTP responder on 127.0.0.1:123 (needs root) unless one already answers;
3. writes the director config ([server] [ptd] [analyzer1]; NOT the stale server.template.conf
   layout) with `ptd:` = the powerd-ptd executable and `devicePort` = a powerd probe spec;
4. starts server.py, runs client.py for one full ranging + testing session whose workload is
   workload.py (real MLCommons LoadGen, dummy SUT), with -S so the server stops afterwards;
5. runs compliance/check.py on the session directory and records each check's verdict and reason;
6. runs `powerd report <session>` on the store powerd-ptd wrote and compares its phases with
   power-dev's spl.txt samples and marks (compare.py), writing summary.json and summary.md.

Everything lands in --workdir (default /tmp/powerd-mlperf-<UTC stamp>).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402

SERVER_PORT = 4950


def export_power_dev(src: Path, dest: Path) -> Path:
    """Copy power-dev to dest/power-dev (a checkout is copied, a git dir `git archive`d)."""
    out = dest / "power-dev"
    if out.exists():
        shutil.rmtree(out)
    if (src / "ptd_client_server" / "server.py").is_file():
        shutil.copytree(src, out, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    else:
        out.mkdir(parents=True)
        archive = subprocess.run(
            ["git", f"--git-dir={src}", "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    rev = subprocess.run(
        [
            "git",
            f"--git-dir={src if not (src / '.git').exists() else src / '.git'}",
            "rev-parse",
            "HEAD",
        ],
        check=False,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (out / "REVISION").write_text((rev or "unknown (not a git checkout)") + "\n")
    return out


def ntp_answers(host: str = "127.0.0.1") -> bool:
    """True when something answers a minimal NTP client query on host:123 within 1 s."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(b"\x23" + b"\0" * 47, (host, 123))
        data, _ = s.recvfrom(512)
        return len(data) >= 48
    except OSError:
        return False
    finally:
        s.close()


def write_config(
    path: Path, ptd_exe: str, device_type: int, device_port: str, ptd_port: int
) -> None:
    """Write the director config the way server.py reads it (analyzer keys under [analyzer1])."""
    path.write_text(
        "\n".join(
            [
                "[server]",
                "ntpServer: 127.0.0.1",
                f"listen: 127.0.0.1 {SERVER_PORT}",
                "",
                "[ptd]",
                f"ptd: {ptd_exe}",
                "analyzerCount: 1",
                "",
                "[analyzer1]",
                "interfaceFlag:",
                f"deviceType: {device_type}",
                f"devicePort: {device_port}",
                f"networkPort: {ptd_port}",
                "",
            ]
        )
    )


def wait_listening(port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until 127.0.0.1:port accepts a connection; fail early if proc has exited."""
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(
                f"server.py exited with {proc.returncode} before listening (see server.out)"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server.py not listening on {port} after {timeout_s} s")


def run_check(
    pd: Path, session_dir: Path, py: str, workdir: Path, script: str = "check.py"
) -> dict[str, object]:
    """Run compliance/<script>; return its exit code, each check's verdict and the reason lines."""
    res = subprocess.run(
        [py, str(pd / "compliance" / script), str(session_dir)],
        check=False,
        capture_output=True,
        text=True,
        cwd=str(pd / "compliance"),
    )
    out = res.stdout + res.stderr
    (workdir / script.replace(".py", ".out")).write_text(out)
    checks: list[dict[str, object]] = []
    for line in out.splitlines():
        s = line.strip()
        for tag, ok in (("[x] ", True), ("[ ] ", False)):
            i = s.find(tag)
            if i >= 0:
                checks.append({"check": s[i + 4 :], "passed": ok, "why": []})
                break
        else:
            if (
                checks
                and not checks[-1]["passed"]
                and s
                and s != "ERROR:main:"
                and not s.startswith(("All checks", "ERROR: Not all"))
            ):
                why = checks[-1]["why"]
                assert isinstance(why, list)
                if len(why) < 8:
                    why.append(s)
    return {"exit_code": res.returncode, "checks": checks}


# The only edits of the derived checker: the identity lists and the Yokogawa-only message. Each
# pattern must occur exactly once in check.py, else the relaxed pass is refused (power-dev changed).
RELAX = [
    ('SUPPORTED_VERSION = ["1.11.1"]', 'SUPPORTED_VERSION = ["1.11.1", {version!r}]'),
    ("SUPPORTED_MODEL = {{", "SUPPORTED_MODEL = {{\n    {model!r}: {devtype},"),
    (
        'r"Uncertainty checking for Yokogawa\\S+ is activated"',
        'r"Uncertainty checking for .+? is activated"',
    ),
]


def identity(session_dir: Path) -> tuple[str, str]:
    """(model, version) as check.py parses them from the Identify reply in server.json."""
    msgs = json.loads((session_dir / "power" / "server.json").read_text())["ptd_messages"]
    reply = next((m["reply"] for m in msgs if m["cmd"] == "Identify"), "")
    m = re.search(r"(?<=version=)(.+?)-", reply)
    return reply.split(",")[0], (m.group(1) if m else "")


def relaxed_checker(pd: Path, session_dir: Path, devtype: int) -> Path:
    """Write compliance/check_relaxed.py: check.py with only its PTDaemon-identity tests widened.

    Why: the unmodified checker stops at the first identity assertion inside a check (version,
    then model; the Yokogawa line, then the rest of the log checks), so it never shows whether
    the remaining assertions of those checks pass. The relaxed copy accepts powerd-ptd's own
    Identify model/version and deviceType and any instrument name in the 'Uncertainty checking
    for ... is activated' line; nothing else differs. It lives in the work directory only.
    """
    model, version = identity(session_dir)
    text = (pd / "compliance" / "check.py").read_text()
    for old, new in RELAX:
        old_t = old.replace("{{", "{")
        if text.count(old_t) != 1:
            raise SystemExit(f"check.py changed: {old_t!r} found {text.count(old_t)} times")
        text = text.replace(old_t, new.format(version=version, model=model, devtype=devtype))
    out = pd / "compliance" / "check_relaxed.py"
    out.write_text(text)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the whole session; print summary.md; exit 0 when the run completed (checks may fail)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--power-dev", required=True, type=Path, help="power-dev checkout or git dir")
    ap.add_argument("--ptd", default=shutil.which("powerd-ptd") or "", help="powerd-ptd executable")
    ap.add_argument(
        "--powerd", default=shutil.which("powerd") or "", help="powerd executable (report)"
    )
    ap.add_argument(
        "--device-port",
        default="sim:square,high=40,low=20,period=0.25,acc=0.005",
        help="probe spec for devicePort",
    )
    ap.add_argument(
        "--device-type", type=int, default=0, help="deviceType (0 = PTD's own dummy device)"
    )
    ap.add_argument("--ptd-port", type=int, default=8888)
    ap.add_argument(
        "--sim", metavar="MODEL", help="start `powerd sim MODEL` on a pty; {link} in --device-port"
    )
    ap.add_argument("--sim-waveform", default="square,high=40,low=30,period=0.5,duty=0.5")
    ap.add_argument("--duration-s", type=float, default=5.0, help="LoadGen min duration per run")
    ap.add_argument("--scenario", default="Offline")
    ap.add_argument("--label", default="powerd")
    ap.add_argument(
        "--python", default=sys.executable, help="Python 3.7-3.12 for server/client/check"
    )
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args(argv)
    if not args.ptd or not args.powerd:
        raise SystemExit("powerd-ptd / powerd not found: pass --ptd and --powerd")

    workdir = args.workdir or Path(
        f"/tmp/powerd-mlperf-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    )
    workdir.mkdir(parents=True, exist_ok=True)
    pd = export_power_dev(args.power_dev.resolve(), workdir)
    state_dir = workdir / "state"
    indir, outdir = workdir / "loadgen-in", workdir / "client-out"
    for d in (state_dir, outdir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
    conf = workdir / "server.conf"
    env = dict(os.environ, POWERD_STATE_DIR=str(state_dir))
    env.pop("MLPP_DEBUG", None)

    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not ntp_answers():
            ntp_log = open(workdir / "ntp.out", "wb")  # noqa: SIM115 (lives as long as the child)
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "ntp_responder.py")],
                    stdout=ntp_log,
                    stderr=subprocess.STDOUT,
                )
            )
            time.sleep(0.5)
            if not ntp_answers():
                raise SystemExit("no NTP answer on 127.0.0.1:123 (the responder needs root)")
        device_port = args.device_port
        if args.sim:
            link = workdir / f"{args.sim}.pty"
            sim_log = open(workdir / "sim.out", "wb")  # noqa: SIM115 (lives as long as the child)
            sim = subprocess.Popen(
                [
                    args.powerd,
                    "sim",
                    args.sim,
                    "--link",
                    str(link),
                    "--waveform",
                    args.sim_waveform,
                ],
                stdout=sim_log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            procs.append(sim)
            deadline_s = time.monotonic() + 30
            while not link.exists():
                if sim.poll() is not None or time.monotonic() > deadline_s:
                    raise SystemExit("powerd sim did not create its pty link (see sim.out)")
                time.sleep(0.1)
            device_port = args.device_port.replace("{link}", str(link))
        write_config(conf, os.path.abspath(args.ptd), args.device_type, device_port, args.ptd_port)
        server_log = open(workdir / "server.out", "wb")  # noqa: SIM115 (lives as long as the child)
        server = subprocess.Popen(
            [args.python, str(pd / "ptd_client_server" / "server.py"), "-c", str(conf)],
            stdout=server_log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(workdir),
        )
        procs.append(server)
        wait_listening(SERVER_PORT, 90.0, server)

        workload = (
            f"{sys.executable} {HERE / 'workload.py'} --outdir {indir / 'lg'} "
            f"--duration-s {args.duration_s} --scenario {args.scenario}"
        )
        client_cmd = [
            args.python, str(pd / "ptd_client_server" / "client.py"),
            "-a", "127.0.0.1", "-p", str(SERVER_PORT), "-n", "127.0.0.1",
            "-w", workload, "-L", str(indir), "-o", str(outdir), "-l", args.label, "-f", "-S",
        ]  # fmt: skip
        t0_s = time.monotonic()
        with open(workdir / "client.out", "wb") as client_log:
            client = subprocess.run(
                client_cmd,
                check=False,
                stdout=client_log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(workdir),
            )
        session_s = time.monotonic() - t0_s
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.terminate()
        sessions = sorted(p for p in outdir.iterdir() if p.is_dir())
        summary: dict[str, object] = {
            "power_dev_revision": (pd / "REVISION").read_text().strip(),
            "device_port": device_port,
            "sim": args.sim and f"{args.sim} {args.sim_waveform}",
            "device_type": args.device_type,
            "client_exit_code": client.returncode,
            "session_wall_s": round(session_s, 1),
            "workdir": str(workdir),
        }
        if client.returncode != 0 or not sessions:
            summary["error"] = "client.py failed: see client.out and server.out"
            (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
            print(json.dumps(summary, indent=2))
            return 1
        session_dir = sessions[-1]
        summary["session"] = session_dir.name
        summary["check"] = run_check(pd, session_dir, args.python, workdir)
        relaxed_checker(pd, session_dir, args.device_type)
        summary["check_relaxed"] = run_check(
            pd, session_dir, args.python, workdir, "check_relaxed.py"
        )
        # LoadGen's own windows as phases (H3's `powerd markers loadgen`), named as the README says.
        loadgen_out = []
        for sub, mode in (("ranging", "ranging"), ("run_1", "testing")):
            lg_res = subprocess.run(
                [
                    args.powerd, "markers", "loadgen", str(session_dir / sub),
                    "--run", session_dir.name,
                    "--phase", f"{session_dir.name}_loadgen_{mode}", "--state-dir", str(state_dir),
                ],
                check=False,
        capture_output=True,
                text=True,
                env=env,
            )  # fmt: skip
            loadgen_out.append(
                f"$ markers loadgen {sub}: exit {lg_res.returncode}\n{lg_res.stdout}{lg_res.stderr}"
            )
        (workdir / "loadgen_markers.out").write_text("\n".join(loadgen_out))
        report_dir = workdir / "report"
        rep = subprocess.run(
            [
                args.powerd,
                "report",
                session_dir.name,
                "--state-dir",
                str(state_dir),
                "--out",
                str(report_dir),
            ],
            check=False,
            capture_output=True,
            text=True,
            env=env,
        )
        (workdir / "report.out").write_text(rep.stdout + rep.stderr)
        summary["report_exit_code"] = rep.returncode
        result_path = report_dir / f"{session_dir.name}.json"
        if rep.returncode == 0 and result_path.is_file():
            waveform = args.sim_waveform if args.sim else None
            if not args.sim and device_port.startswith("sim:"):
                waveform = device_port[len("sim:") :]
            summary["compare"] = compare.compare(
                session_dir, json.loads(result_path.read_text()), waveform
            )
        summary["store_check"] = compare.store_check(session_dir, state_dir)
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        md = compare.markdown(summary)
        (workdir / "summary.md").write_text(md)
        print(md)
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
