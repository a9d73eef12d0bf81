"""The daemon's config is strict: exact types, ranges, known tables and keys, one-line errors
naming the file, the table and the key; ``powerd run --check-config``; the documented sample is
the schema's (parsed from powerd/config.py's docstring and compared key by key)."""

from __future__ import annotations

import re
import sys
import textwrap
import tomllib
from pathlib import Path

import msgspec
import pytest

from powerd import config
from powerd.cli import main
from powerd.errors import PowerdError
from powerd.schema import Table
from powerd.sinks import settings as sink_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "powerd.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PowerdError) as err:
        config.load(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config {path}: ")
    return message.removeprefix(f"config {path}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[http]\nport = "18091"',
            '[http] port: expected an integer from 1 to 65535, got "18091"',
        ),
        ("[http]\nport = 18090.5", "[http] port: expected an integer from 1 to 65535, got 18090.5"),
        ("[http]\nport = 0", "[http] port: expected an integer from 1 to 65535, got 0"),
        ("[mqtt]\nport = 65536", "[mqtt] port: expected an integer from 1 to 65535, got 65536"),
        ("[mqtt]\nport = true", "[mqtt] port: expected an integer from 1 to 65535, got true"),
        (
            '[daemon]\nidle_power_w = "12"',
            '[daemon] idle_power_w: expected a number of at least 0, got "12"',
        ),
        (
            '[daemon]\nprobes = "sim:constant,w=5"',
            '[daemon] probes: expected a list of non-empty strings, got "sim:constant,w=5"',
        ),
        (
            '[daemon]\nprimary = ["a", 3]',
            "[daemon] primary[1]: expected a non-empty string, got 3",
        ),
        (
            "[daemon]\nresult_grace_s = -5",
            "[daemon] result_grace_s: expected a number of seconds from 0 (off) to 86400, got -5",
        ),
        (
            "[daemon]\nclock_interval_s = 0",
            "[daemon] clock_interval_s: expected a number of seconds greater than 0, "
            "at most 86400, got 0",
        ),
        (
            "[daemon]\nclock_interval_s = inf",
            "[daemon] clock_interval_s: expected a number of seconds greater than 0, "
            "at most 86400, got inf",
        ),
        (
            '[retention]\nmax_gb = "big"',
            '[retention] max_gb: expected a number greater than 0, got "big"',
        ),
        ("[retention]\nmax_age_days = 0", "[retention] max_age_days: expected a number greater"),
        ("[sinks]\nrecent_runs = 0", "[sinks] recent_runs: expected an integer of at least 1"),
        ('[mqtt]\ntls_ca = ""', '[mqtt] tls_ca: expected a path (a non-empty string), got ""'),
        ("[mqtt]\ntls_insecure = 1", "[mqtt] tls_insecure: expected true or false, got 1"),
        ("[influx]\nurl = 'http://x'\nbatch_size = 0", "[influx] batch_size: expected an integer"),
        (
            "[influx]\nurl = 'x:8428'",
            '[influx] url: expected a URL starting with http:// or https://, got "x:8428"',
        ),
        (
            "[influx]\nbucket = 'b'",
            "[influx] url: required; expected a URL starting with http:// or https://",
        ),
        ("http = 5", "[http]: expected a table, got 5"),
        (
            "[daemon]\nheld_place_bound_s = 0",
            "[daemon] held_place_bound_s: expected a number greater than 0, got 0",
        ),
    ],
)
def test_a_wrong_type_or_range_is_one_line_naming_table_key_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert error_of(tmp_path, text).startswith(expected)


def test_unknown_tables_and_keys_are_errors_naming_the_allowed_ones(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[htp]\nport = 1") == (
        "unknown table [htp]; allowed: [daemon], [mqtt], [http], [retention], [sinks], [influx], "
        "[calibration], [efficiency]"
    )
    assert error_of(tmp_path, "[http]\nprot = 1") == (
        "[http] prot: unknown key; allowed: bind, port, token_file, header_timeout_s, "
        "body_timeout_s, max_connections"
    )
    assert error_of(tmp_path, "[mqtt]\npasword_file = 'x'").startswith(
        "[mqtt] pasword_file: unknown key; allowed: host, port, username, password_file,"
    )
    assert error_of(tmp_path, "[daemon.sub]\nx = 1").startswith("[daemon] sub: unknown key")


def test_exact_values_are_read_and_ints_stand_for_numbers(tmp_path: Path) -> None:
    cfg = config.load(
        write(
            tmp_path,
            '[daemon]\nprobes = ["sim:constant,w=5"]\nidle_power_w = 12\nresult_grace_s = 0\n'
            "[http]\nport = 18091\n[retention]\nmax_age_days = 1\nmax_gb = 0.5\n"
            "[mqtt]\nport = 1884\n"
            '[influx]\nurl = "https://vm:8428/"\ndownsample_s = 0\n',
        )
    )
    assert cfg.probes == ("sim:constant,w=5",)
    assert cfg.idle_power_w == 12.0 and isinstance(cfg.idle_power_w, float)
    assert cfg.result_grace_s == 0.0
    assert cfg.held_place_bound_s == 60.0  # the default
    bound = config.load(write(tmp_path, "[daemon]\nheld_place_bound_s = 5\n"))
    assert bound.held_place_bound_s == 5.0
    assert cfg.http.port == 18091
    assert (cfg.retention.max_age_s, cfg.retention.max_bytes) == (86400.0, 500_000_000)
    assert cfg.mqtt is not None and cfg.mqtt.port == 1884 and cfg.mqtt.host == "127.0.0.1"
    assert cfg.influx is not None and cfg.influx.url == "https://vm:8428"
    empty = config.load(write(tmp_path, ""))
    assert empty.mqtt is None and empty.influx is None and empty.http.port == 8089


def sample(doc: str | None) -> str:
    """The indented TOML sample of a module docstring (from its first ``[table]`` line)."""
    assert doc is not None
    lines = doc.splitlines()
    first = next(i for i, line in enumerate(lines) if re.match(r"    \[\w+\]", line))
    block = [line for line in lines[first:] if not line or line.startswith("    ")]
    return textwrap.dedent("\n".join(block))


def fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_the_documented_sample_is_the_schema(tmp_path: Path) -> None:
    text = sample(config.__doc__)
    cfg = config.load(write(tmp_path, text))
    assert cfg.mqtt is not None and cfg.influx is not None
    data = tomllib.loads(text)
    tables: dict[str, type[msgspec.Struct]] = {
        "daemon": config.DaemonTable,
        "mqtt": type(cfg.mqtt),
        "http": config.HttpSettings,
        "retention": config.RetentionTable,
        "sinks": sink_settings.SinksTable,
        "influx": sink_settings.InfluxSettings,
    }
    from powerd.calibration import CalibrationEntry

    cal = data.pop("calibration")
    eff = data.pop("efficiency")
    extra = {"calibration", "efficiency"}
    assert set(data) | extra == fields(config.ConfigFile) == set(tables) | extra
    from powerd.efficiency import CounterRef, EfficiencyTable

    for e in eff:
        assert set(e) == fields(EfficiencyTable), "[[efficiency]] docstring vs schema"
        for c in e["counters"]:
            assert set(c) == fields(CounterRef), "[[efficiency]] counters vs schema"
    assert len(cfg.efficiency) == len(eff)
    for entry in cal.values():
        assert set(entry) == fields(CalibrationEntry), "[calibration.*] docstring vs schema"
    assert set(cfg.calibration) == set(cal)
    for name, struct in tables.items():
        assert issubclass(struct, Table)
        assert set(data[name]) == fields(struct), f"[{name}] in the docstring vs the schema"
    sinks_doc = tomllib.loads(sample(sink_settings.__doc__))
    assert set(sinks_doc["sinks"]) == fields(sink_settings.SinksTable)
    assert set(sinks_doc["influx"]) == fields(sink_settings.InfluxSettings)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_says_ok_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    state = tmp_path / "not" / "yet"
    path = write(
        tmp_path,
        f'[daemon]\nstate_dir = "{state}"\nprobes = ["sim:constant,w=5,device=edge-01"]\n'
        f'[http]\nbind = "0.0.0.0"\ntoken_file = "{token}"\n',
    )
    assert run_cli(capsys, "run", "--check-config", str(path)) == (0, f"config {path}: ok\n", "")
    assert not state.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[http]\nport = "18091"', "[http] port: expected an integer from 1 to 65535"),
        (
            '[daemon]\nprobes = ["sim:constant", "nosuch:x"]',
            "[daemon] probes[1] 'nosuch:x': unknown probe 'nosuch'; known: ",
        ),
        (
            '[daemon]\nprobes = ["sim:constant,w=big"]',
            "[daemon] probes[0] 'sim:constant,w=big': sim: w='big' is not a number",
        ),
        (
            '[daemon]\nprobes = ["sim:constant,bogus=1,device=edge-01"]',
            "[daemon] probes[0] 'sim:constant,bogus=1,device=edge-01': unknown key 'bogus'",
        ),
        (
            '[daemon]\nprobes = ["sim:constant,device=a b"]',
            "[daemon] probes[0] 'sim:constant,device=a b': device='a b': a device id is",
        ),
        ('[http]\nbind = "0.0.0.0"', "is not loopback: set token_file"),
        ('[http]\ntoken_file = "{tmp}/none"', "cannot read API token file"),
        ('[mqtt]\npassword_file = "{tmp}/none"', "[mqtt] password_file {tmp}/none: no such file"),
        (
            '[daemon]\nstate_dir = "{tmp}/file/db"',
            "[daemon] state_dir {tmp}/file/db: {tmp}/file is not a directory",
        ),
        (
            '[influx]\nurl = "http://x"\ntoken_file = "{tmp}/none"',
            "[influx] token_file {tmp}/none: no such file",
        ),
    ],
)
def test_check_config_reports_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    (tmp_path / "file").write_text("")
    path = write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    code, out, err = run_cli(capsys, "run", "--check-config", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"powerd: error: config {path}: ")
    assert expected.replace("{tmp}", str(tmp_path)) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_or_broken_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "run", "--check-config", str(tmp_path / "none.toml"))
    assert code == 2 and "cannot read config" in err and err.count("\n") == 1
    path = write(tmp_path, "[http\n")
    code, _, err = run_cli(capsys, "run", "--config", str(path))
    assert code == 2 and f"config {path} is not valid TOML" in err and err.count("\n") == 1


def test_the_readme_configs_validate(tmp_path: Path) -> None:
    from powerd.agent import cli as agent_cli
    from powerd.verify.protocol import load_protocol

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [textwrap.dedent(b) for b in re.findall(r"```toml\n(.*?)\s*```", readme, re.S)]
    assert len(blocks) >= 2
    for block in blocks:
        path = write(tmp_path, block)
        if "[agent]" in block:
            agent_cli.config_from(agent_cli.build_parser().parse_args(["--config", str(path)]))
        elif re.search(r"^claims\s*=", block, re.M):  # a `powerd verify` protocol file
            load_protocol(path)
        else:
            config.load(path)


def test_check_config_names_the_missing_influx_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An [influx] table without influxdb-client installed is not "ok": `powerd run` would stop at
    start, so the check says what to install (None in sys.modules = the import system's own
    "not importable")."""
    monkeypatch.setitem(sys.modules, "influxdb_client", None)
    path = write(tmp_path, f'[daemon]\nstate_dir = "{tmp_path}/st"\n[influx]\nurl = "http://x"\n')
    code, out, err = run_cli(capsys, "run", "--check-config", str(path))
    assert (code, out) == (2, "")
    assert err == (
        f"powerd: error: config {path}: [influx] needs the influxdb-client package: "
        "pip install 'powerd[influx]'\n"
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        # the family does not load without pyserial: named, never "unknown probe"
        ("ina2xx:/dev/ttyACM0", "probe 'ina2xx' is not usable here: pyserial is not installed"),
        # families that load, and check their spec and binding without opening anything
        ("wt300:/dev/ttyUSB0", "pyserial is not installed: pip install 'powerd[serial]'"),
        ("nvml", "nvidia-ml-py (module pynvml) is not installed: pip install 'powerd[nvml]'"),
    ],
)
def test_check_config_names_a_probes_missing_extra(tmp_path: Path, spec: str, says: str) -> None:
    """A probe whose optional dependency is absent is named with what to install (a fresh
    interpreter where pyserial and pynvml cannot be imported)."""
    import subprocess

    path = write(tmp_path, f'[daemon]\nprobes = ["sim:constant,w=1", "{spec}"]\n')
    code = (
        "import sys; sys.modules['serial'] = None; sys.modules['pynvml'] = None\n"
        "from powerd.cli import main\n"
        f"sys.exit(main(['run', '--check-config', {str(path)!r}]))\n"
    )
    cmd = [sys.executable, "-c", code]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr.startswith(f"powerd: error: config {path}: [daemon] probes[1] '{spec}': ")
    assert says in r.stderr and r.stderr.count("\n") == 1


def test_check_config_checks_a_wt300_spec_without_opening_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[daemon]\nprobes = ["wt300:/dev/ttyUSB0,rate=7"]\n')
    code, out, err = run_cli(capsys, "run", "--check-config", str(path))
    assert (code, out) == (2, "") and "rate=7 s is not an update interval" in err
    path = write(
        tmp_path, f'[daemon]\nstate_dir = "{tmp_path}/st"\nprobes = ["wt300:/nonexistent"]\n'
    )
    assert run_cli(capsys, "run", "--check-config", str(path))[0] == 0  # no port is opened
