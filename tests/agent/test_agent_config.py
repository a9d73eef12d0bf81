"""The agent's config (``powerd-agent --config FILE`` and flags) is as strict as the daemon's:
exact types, ranges, known keys, one-line errors naming the file (or the flag), table and key;
a flag given wins over the file and is checked as its key is."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from powerd.agent import cli
from powerd.agent.agent import PUBLISH_INTERVAL_S, AgentConfig
from powerd.agent.mqttconf import MqttSettings
from powerd.errors import PowerdError
from tests.powerd.test_config_strict import fields, sample


def config(tmp_path: Path, text: str, *flags: str) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    cfg = cli.config_from(cli.build_parser().parse_args(["--config", str(path), *flags]))
    assert isinstance(cfg, AgentConfig)
    return cfg


def error_of(tmp_path: Path, text: str, *flags: str) -> str:
    with pytest.raises(PowerdError) as err:
        config(tmp_path, text, *flags)
    message = str(err.value)
    assert "\n" not in message
    return message


PROBES = '[agent]\nprobes = ["sim:constant,w=2"]\n'


def test_the_file_is_read_and_flags_win(tmp_path: Path) -> None:
    text = (
        '[agent]\nid = "edge-01"\nprobes = ["sim:constant,w=2"]\nspool_dir = "/s"\n'
        "spool_max_mb = 1\nhttp_port = 0\npublish_interval_s = 2\n"
        '[mqtt]\nhost = "broker"\nport = 1884\nusername = "u"\n'
    )
    cfg = config(tmp_path, text)
    assert (cfg.id, cfg.probes, cfg.spool_dir) == ("edge-01", ("sim:constant,w=2",), Path("/s"))
    assert (cfg.spool_max_bytes, cfg.http_port, cfg.publish_interval_s) == (1 << 20, 0, 2.0)
    assert cfg.mqtt == MqttSettings(host="broker", port=1884, username="u")
    flagged = config(
        tmp_path,
        text,
        *("--id", "edge-02", "--probe", "sim:constant,w=3", "--http-port", "9000"),
        *("--publish-interval", "0.25", "--mqtt", "other:1999", "--spool-dir", "/t"),
    )
    assert (flagged.id, flagged.probes, flagged.http_port) == (
        "edge-02",
        ("sim:constant,w=3",),
        9000,
    )
    assert (flagged.publish_interval_s, flagged.spool_dir) == (0.25, Path("/t"))
    assert (flagged.mqtt.host, flagged.mqtt.port, flagged.mqtt.username) == ("other", 1999, "u")
    assert config(tmp_path, text, "--no-http").http_port is None
    only_host = config(tmp_path, text, "--mqtt", "b2").mqtt
    assert only_host == MqttSettings(host="b2", port=1884, username="u")
    plain = config(tmp_path, PROBES)
    assert (plain.http_port, plain.publish_interval_s) == (8090, PUBLISH_INTERVAL_S)
    assert plain.mqtt == MqttSettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PROBES + 'http_port = "8090"',
            '[agent] http_port: expected an integer from 0 (any free port) to 65535, got "8090"',
        ),
        (PROBES + "http_port = 70000", "[agent] http_port: expected an integer from 0"),
        (
            '[agent]\nprobes = "sim:constant"',
            '[agent] probes: expected a list of non-empty strings, got "sim:constant"',
        ),
        (PROBES + "spool_max_mb = 0", "[agent] spool_max_mb: expected a number greater than 0"),
        (PROBES + "publish_interval_s = -1", "[agent] publish_interval_s: expected a number of"),
        (
            PROBES + 'id = "edge 01"',
            '[agent] id: expected 1-128 characters of A-Za-z0-9_.:-, got "edge 01"',
        ),
        (PROBES + "spool = 1", "[agent] spool: unknown key; allowed: id, probes, spool_dir,"),
        (PROBES + '[mqtt]\nport = "1883"', "[mqtt] port: expected an integer from 1 to 65535"),
        (PROBES + "[mqtt]\nhots = 'x'", "[mqtt] hots: unknown key; allowed: host, port,"),
        (PROBES + "[daemon]\n", "unknown table [daemon]; allowed: [agent], [mqtt]"),
    ],
)
def test_file_errors_name_the_file_table_and_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"config {tmp_path / 'agent.toml'}: {expected}")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--http-port", "70000"), "--http-port: expected an integer from 0 (any free port)"),
        (("--publish-interval", "0"), "--publish-interval: expected a number of seconds greater"),
        (("--id", "a b"), '--id: expected 1-128 characters of A-Za-z0-9_.:-, got "a b"'),
        (("--mqtt", "broker:abc"), '--mqtt broker:abc: expected an integer from 1 to 65535, got "'),
        (("--mqtt", "broker:0"), "--mqtt broker:0: expected an integer from 1 to 65535, got 0"),
        (("--probe", ""), '--probe: expected a non-empty string, got ""'),
    ],
)
def test_flag_errors_name_the_flag(tmp_path: Path, flags: tuple[str, ...], expected: str) -> None:
    assert error_of(tmp_path, PROBES, *flags).startswith(expected)


def test_no_probes_is_an_error(tmp_path: Path) -> None:
    assert "no probes" in error_of(tmp_path, "")


def test_the_documented_sample_is_the_schema(tmp_path: Path) -> None:
    text = sample(cli.__doc__)
    assert set(tomllib.loads(text)["agent"]) == fields(cli.AgentTable)
    assert config(tmp_path, text).id == "edge-01"


def test_main_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(PROBES + "[mqtt]\nport = 18090.5\n")
    assert cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"powerd-agent: error: config {path}: [mqtt] port: expected an integer from 1 to 65535, "
        "got 18090.5\n"
    )


def test_mqtt_from_table_is_checked_the_same_way() -> None:
    assert MqttSettings.from_table({"port": 1999}) == MqttSettings(port=1999)
    with pytest.raises(PowerdError, match=r"^\[mqtt\] port: expected an integer from 1 to 65535"):
        MqttSettings.from_table({"port": "1999"})


def test_a_session_is_mqtt_311_unless_an_expiry_asks_for_v5() -> None:
    """The daemon's persistent session is MQTT 3.1.1 (clean_session off: kept until the
    broker's persistent_client_expiration), cheaper per received packet than v5; an explicit
    ``[mqtt] session_expiry_s`` gives a v5 session with that expiry."""
    import asyncio

    import paho.mqtt.client as paho

    async def both() -> None:  # aiomqtt builds its client on a running loop
        plain = MqttSettings().client("powerd-x")
        assert plain._client._protocol == paho.MQTTv311
        assert plain._client._clean_session is False
        v5 = MqttSettings().client("powerd-x", session_expiry_s=3600)
        assert v5._client._protocol == paho.MQTTv5 and v5._clean_start is False
        assert v5._properties is not None and v5._properties.SessionExpiryInterval == 3600

    asyncio.run(both())
