"""The naming contract (issue 7): one module, Prometheus names = VictoriaMetrics series names, and
the config's [sinks]/[influx] tables checked key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerd import metrics
from powerd.channel import Channel
from powerd.config import load
from powerd.errors import PowerdError

CONTRACT = {
    "powerd_power_watts": ("powerd_power", "watts"),
    "powerd_energy_joules_total": ("powerd_energy", "joules_total"),
    "powerd_phase_energy_joules": ("powerd_phase", "energy_joules"),
    "powerd_phase_net_energy_joules": ("powerd_phase", "net_energy_joules"),
    "powerd_phase_joules_per_unit": ("powerd_phase", "joules_per_unit"),
    "powerd_phase_mean_power_watts": ("powerd_phase", "mean_power_watts"),
    "powerd_phase_uncertainty_joules": ("powerd_phase", "uncertainty_joules"),
    "powerd_phase_duration_seconds": ("powerd_phase", "duration_seconds"),
    "powerd_phase_flag": ("powerd_phase", "flag"),
    "powerd_probe_reads_total": ("powerd_probe", "reads_total"),
    "powerd_probe_errors_total": ("powerd_probe", "errors_total"),
    "powerd_probe_problems_total": ("powerd_probe", "problems_total"),
    # issue 15: continuous efficiency (the Grafana efficiency dashboard reads these)
    "powerd_efficiency_units_per_second": ("powerd_efficiency", "units_per_second"),
    "powerd_efficiency_power_watts": ("powerd_efficiency", "power_watts"),
    "powerd_efficiency_joules_per_unit": ("powerd_efficiency", "joules_per_unit"),
    "powerd_efficiency_joules_per_unit_uncertainty": (
        "powerd_efficiency",
        "joules_per_unit_uncertainty",
    ),
    "powerd_efficiency_units_per_joule": ("powerd_efficiency", "units_per_joule"),
    "powerd_efficiency_idle_fraction": ("powerd_efficiency", "idle_fraction"),
}


def test_every_contract_name_maps_to_the_same_victoriametrics_series() -> None:
    got = {name: (n.measurement, n.field) for name, n in metrics.INFLUX.items()}
    assert got == CONTRACT
    for name, n in metrics.INFLUX.items():
        assert n.series == name


def test_channel_labels_split_agent_probe_and_instance() -> None:
    ch = Channel("edge-1/nvml:0", "power", "telemetry", 0.1)
    assert metrics.channel_labels(ch, "h") == {
        "channel": "edge-1/nvml:0",
        "agent": "edge-1",
        "probe": "nvml",
        "source_class": "telemetry",
        "host": "h",
    }
    own = Channel("rapl:package-0", "energy", "telemetry", 0.1)
    assert metrics.channel_labels(own, "h")["agent"] == ""
    assert tuple(metrics.channel_labels(ch, "h")) == metrics.CHANNEL_LABELS


def test_only_allowed_meta_keys_become_phase_labels() -> None:
    labels = metrics.LabelConfig("h", ("model", "batch"))
    entry = {"phase": "infer", "trial": 2, "unit": "token", "meta": {"model": "m", "secret": "x"}}
    assert metrics.phase_labels("r1", entry, labels) == {
        "run": "r1",
        "phase": "infer",
        "trial": "2",
        "unit": "token",
        "host": "h",
        "model": "m",
        "batch": "",
    }


@pytest.mark.parametrize("bad", ["run", "host", "flag", "has-dash", "__x", "9lives"])
def test_meta_labels_must_be_label_names_that_do_not_clash(bad: str) -> None:
    with pytest.raises(PowerdError, match="meta_labels"):
        metrics.LabelConfig("h", (bad,))


def test_config_reads_sinks_and_influx_tables(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[sinks]\nhost = "rack-1"\nmeta_labels = ["model", "batch"]\nrecent_runs = 3\n'
        '[influx]\nurl = "http://127.0.0.1:8428/"\nbucket = "b"\ndownsample_s = 0\n'
        "batch_size = 100\nbuffer_max_mb = 1.5\n"
    )
    cfg = load(path)
    assert cfg.sinks.labels == metrics.LabelConfig("rack-1", ("model", "batch"))
    assert cfg.sinks.recent_runs == 3
    assert cfg.influx is not None
    assert cfg.influx.url == "http://127.0.0.1:8428"
    assert (cfg.influx.bucket, cfg.influx.downsample_s, cfg.influx.batch_size) == ("b", 0.0, 100)
    assert cfg.influx.buffer_max_mb == 1.5
    defaults = tmp_path / "d.toml"
    defaults.write_text("")
    assert load(defaults).influx is None
    assert load(defaults).sinks.labels.meta_labels == ("model",)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[influx]\nurl = "http://x"\nbuckets = "b"\n', "buckets: unknown key"),
        ("[influx]\nbucket = 'b'\n", "url: required"),
        ('[influx]\nurl = "x:8428"\n', "http://"),
        ('[influx]\nurl = "http://x"\ndownsample_s = -1\n', "downsample_s"),
        ("[sinks]\nmeta_labels = ['run']\n", "meta_labels"),
        ("[sinks]\nlabels = []\n", "unknown key"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(PowerdError, match=match):
        load(path)
