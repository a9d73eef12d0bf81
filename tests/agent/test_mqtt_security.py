"""MQTT with a username, a password file and TLS, daemon and agent both, against Debian's
mosquitto; a wrong password is a clear error that never shows the secret."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerd.agent.mqttconf import MqttSettings
from tests.servers import Mosquitto, free_port, running_daemon, wait_for, wait_port
from tests.tools import require_tool

PASSWORD = "s3cret-Pa55word-for-tests"


def make_certs(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    ssl = require_tool("openssl")

    def run(*args: str) -> None:
        subprocess.run([ssl, *args], cwd=d, check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=powerd-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    )


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    exe = require_tool("mosquitto")
    make_certs(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(
        [require_tool("mosquitto_passwd"), "-c", "-b", str(passwd), "powerd", PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    port = free_port()
    conf = tmp_path / "secure.conf"
    conf.write_text(
        f"user root\nper_listener_settings true\nlistener {port} 127.0.0.1\n"
        f"allow_anonymous false\npassword_file {passwd}\npersistence false\n"
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\n"
    )
    broker = Mosquitto(conf, port, exe)
    broker.start()
    wait_port(port)
    try:
        yield broker
    finally:
        broker.stop()


def settings(tmp_path: Path, port: int, password: str) -> MqttSettings:
    pw = tmp_path / f"pw-{len(password)}"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return MqttSettings(
        host="127.0.0.1", port=port, username="powerd", password_file=pw, tls_ca=tmp_path / "ca.pem"
    )


def test_daemon_and_agent_over_tls_with_a_password(
    tmp_path: Path, secure_broker: Mosquitto
) -> None:
    mqtt = settings(tmp_path, secure_broker.port, PASSWORD)
    agent_conf = tmp_path / "agent.toml"
    agent_conf.write_text(
        f'[agent]\nid = "sec-1"\nprobes = ["sim:constant,w=2,rate=50"]\n'
        f'spool_dir = "{tmp_path / "spool"}"\nhttp_port = 0\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {secure_broker.port}\nusername = "powerd"\n'
        f'password_file = "{mqtt.password_file}"\ntls_ca = "{tmp_path / "ca.pem"}"\n'
    )
    log = tmp_path / "agent.log"
    with running_daemon(tmp_path, secure_broker, mqtt) as daemon, log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "powerd.agent", "--config", str(agent_conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: daemon.timeline.channels.get("sec-1/sim:constant"), what="channels")
            wait_for(lambda: daemon.timeline.latest("sec-1/sim:constant"), what="samples")
            wait_for(lambda: daemon.offsets_json().get("sec-1"), what="clock exchanges")
        finally:
            proc.terminate()
            proc.wait(15)
    text = log.read_text()
    assert "connected to mqtts://powerd@127.0.0.1" in text
    assert PASSWORD not in text


def test_wrong_password_is_refused_and_never_logged(
    tmp_path: Path, secure_broker: Mosquitto, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-password-123"
    agent_conf = tmp_path / "agent.toml"
    pw = tmp_path / "wrong-pw"
    pw.write_text(wrong)
    agent_conf.write_text(
        f'[agent]\nid = "sec-2"\nprobes = ["sim:constant,w=2"]\n'
        f'spool_dir = "{tmp_path / "spool"}"\nhttp_port = 0\n'
        f'[mqtt]\nport = {secure_broker.port}\nusername = "powerd"\npassword_file = "{pw}"\n'
        f'tls_ca = "{tmp_path / "ca.pem"}"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "powerd.agent", "--config", str(agent_conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(3)
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    text = out.decode()
    assert "Not authorized" in text or "not authori" in text.lower(), text
    assert wrong not in text and PASSWORD not in text


def test_missing_password_file_is_a_one_line_error(tmp_path: Path) -> None:
    conf = tmp_path / "a.toml"
    conf.write_text(f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path / "nope"}"\n')
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "powerd.agent",
            "--id",
            "x",
            "--probe",
            "sim:constant",
            "--no-http",
            "--spool-dir",
            str(tmp_path / "s"),
            "--config",
            str(conf),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "cannot read MQTT password file" in r.stderr and "Traceback" not in r.stderr
