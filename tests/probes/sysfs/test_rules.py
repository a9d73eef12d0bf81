"""The pure rules of the sysfs probes: unit parsers, hwmon pairing, Jetson layouts and roles,
RAPL zone roles, and how their ``measures``/source classes play with powerd's primary rule."""

from __future__ import annotations

import pytest

from powerd.channel import Channel
from powerd.integrate import ChannelEnergy
from powerd.probes.hwmon.chips import ChipListing, plan_chip
from powerd.probes.hwmon.units import (
    microjoules_to_j,
    microwatts_to_w,
    milliseconds_to_s,
    parse_int,
    rail_power_w,
)
from powerd.probes.jetson.layout import iio_files, parse_iio_rail
from powerd.probes.jetson.rails import rail_roles, skip_rail
from powerd.probes.rapl.zones import Zone, plan_zones, vendor_of
from powerd.results import choose_primary


@pytest.mark.parametrize("text", ["", "N/A", "n/a", "NaN", "12 mW", "0x10", "1.5", "garbage"])
def test_a_reading_that_is_not_an_integer_is_an_error_never_zero(text: str) -> None:
    with pytest.raises(ValueError):
        parse_int(text)
    with pytest.raises(ValueError):
        microwatts_to_w(text)


def test_units() -> None:
    assert microwatts_to_w("187000000") == 187.0
    assert microjoules_to_j("262143328850") == 262143.32885
    assert rail_power_w("5040", "1008") == pytest.approx(5.08032)
    assert milliseconds_to_s("35") == 0.035
    with pytest.raises(ValueError, match="negative"):
        microjoules_to_j("-1")
    with pytest.raises(ValueError):
        milliseconds_to_s("0")


def test_jetpack4_iio_voltage_and_current_are_not_swapped() -> None:
    files = iio_files(0)
    assert files["voltage_mv"] == "in_voltage0_input"  # jetson-stats reads these two swapped
    assert files["current_ma"] == "in_current0_input"
    rail = parse_iio_rail(voltage_mv="5072", current_ma="760", power_mw="3854")
    assert (rail.voltage_v, rail.current_a, rail.power_w) == (5.072, 0.76, 3.854)
    assert parse_iio_rail("5000", "100", None).power_w == pytest.approx(0.5)


def chip(name: str, attrs: set[str], labels: dict[str, str] | None = None) -> ChipListing:
    return ChipListing("hwmon0", name, "", frozenset(attrs), labels or {})


def test_ina3221_pairs_channels_1_to_3_only() -> None:
    attrs = {f"in{n}_input" for n in range(1, 8)} | {f"curr{n}_input" for n in range(1, 5)}
    labels = {"in1": "VDD_IN", "in2": "VDD_SOC", "in3": "NC", "in7": "sum of shunt voltages"}
    plans = plan_chip(chip("ina3221", attrs, labels), "ina3221", None)
    assert [p.channel_id for p in plans] == ["hwmon:ina3221.VDD_IN", "hwmon:ina3221.VDD_SOC"]
    assert [p.files for p in plans] == [
        ("in1_input", "curr1_input"),
        ("in2_input", "curr2_input"),
    ]


def test_labels_pair_voltage_and_current_across_indices_and_a_reported_power_wins() -> None:
    attrs = {"in1_input", "in2_input", "curr1_input", "power1_input", "in0_input", "curr5_input"}
    labels = {"in2": "vout", "curr5": "vout", "in1": "vin", "power1": "vin", "curr1": "iin"}
    plans = plan_chip(chip("pmbus", attrs, labels), "pmbus", None)
    by_id = {p.channel_id: p for p in plans}
    assert sorted(by_id) == ["hwmon:pmbus.vin", "hwmon:pmbus.vout"]
    assert by_id["hwmon:pmbus.vout"].files == ("in2_input", "curr5_input")
    assert by_id["hwmon:pmbus.vin"].quantity == "power_input"


def test_input_and_average_of_one_sensor_share_measures_and_ids_stay_short() -> None:
    both = plan_chip(
        chip("amdgpu", {"power1_input", "power1_average"}, {"power1": "PPT"}), "amdgpu", None
    )
    assert [p.channel_id for p in both] == ["hwmon:amdgpu.PPT", "hwmon:amdgpu.PPT.avg"]
    assert {p.measures for p in both} == {"hwmon:amdgpu:PPT"}
    (avg_only,) = plan_chip(chip("amdgpu", {"power1_average"}, {"power1": "PPT"}), "amdgpu", None)
    assert avg_only.channel_id == "hwmon:amdgpu.PPT"


def test_known_parts_of_a_chip_total_are_estimates() -> None:
    attrs = {"energy1_input", "energy2_input", "energy3_input"}
    labels = {"energy1": "Ecore000", "energy2": "Ecore001", "energy3": "Esocket0"}
    plans = plan_chip(chip("amd_energy", attrs, labels), "amd_energy", None)
    classes = {p.channel_id: p.source_class for p in plans}
    assert classes == {
        "hwmon:amd_energy.Ecore000": "estimate",
        "hwmon:amd_energy.Ecore001": "estimate",
        "hwmon:amd_energy.Esocket0": "telemetry",
    }


def test_jetson_rail_roles() -> None:
    assert skip_rail("NC") and skip_rail("sum of shunt voltages") and not skip_rail("VDD_SYNC")
    nx = rail_roles(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"])
    assert [nx[k].source_class for k in nx] == ["telemetry", "estimate", "estimate"]
    tx2 = rail_roles(["VDD_SYS_GPU", "VDD_IN", "VDD_MUX", "VDD_3V3_SYS", "VDD_5V0_IO_SYS"])
    assert tx2["VDD_MUX"].source_class == "telemetry"  # the carrier input, beside the module's
    assert tx2["VDD_3V3_SYS"].note == "part of VDD_MUX, never summed with it"
    assert tx2["VDD_SYS_GPU"].note == "part of VDD_IN, never summed with it"
    agx = rail_roles(["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"])
    assert {r.source_class for r in agx.values()} == {"telemetry"}


def zone(d: str, name: str, parent: str | None) -> Zone:
    return Zone(d, name, parent, 262143328850)


def intel_zones() -> list[Zone]:
    """An Intel host's zones: package 0 with its core and DRAM, psys, and an MMIO package 0."""
    return [
        zone("intel-rapl:0", "package-0", None),
        zone("intel-rapl:0:0", "core", "package-0"),
        zone("intel-rapl:0:1", "dram", "package-0"),
        zone("intel-rapl:1", "psys", None),
        zone("intel-rapl-mmio:0", "package-0", None),
    ]


def test_rapl_zone_roles() -> None:
    zones = intel_zones()
    plans, notes = plan_zones(zones, "GenuineIntel", include_mmio=False)
    got = {p.channel_id: (p.source_class, p.measures) for p in plans}
    assert got == {
        "rapl:package-0": ("telemetry", "rapl:package-0"),
        "rapl:package-0.core": ("estimate", "rapl:package-0.core"),
        "rapl:package-0.dram": ("telemetry", "rapl:package-0.dram"),
        "rapl:psys": ("estimate", "rapl:psys"),
    }
    assert len(notes) == 1 and "intel-rapl-mmio:0" in notes[0]
    assert vendor_of("processor\t: 0\nvendor_id\t: AuthenticAMD\n") == "AuthenticAMD"


def channel_map(plans: list[tuple[str, str, str]]) -> dict[str, Channel]:
    return {
        cid: Channel(cid, "energy", sclass, 0.1, measures=measures)  # type: ignore[arg-type]
        for cid, sclass, measures in plans
    }


def test_primary_rule_sums_packages_and_dram_never_core_or_psys() -> None:
    zones = intel_zones()
    plans, _ = plan_zones(zones, "GenuineIntel", include_mmio=True)
    chans = channel_map([(p.channel_id, p.source_class, p.measures) for p in plans])
    figs = {
        cid: ChannelEnergy(e, e, e, 10, 1.0, 0.01 * e, "counter")
        for cid, e in {
            "rapl:package-0": 30.0,
            "rapl:mmio.package-0": 30.0,
            "rapl:package-0.core": 20.0,
            "rapl:package-0.dram": 4.0,
            "rapl:psys": 50.0,
        }.items()
    }
    primary = choose_primary(figs, chans)
    assert len(primary) == 2
    assert "rapl:package-0.dram" in primary
    assert {"rapl:package-0", "rapl:mmio.package-0"} & set(primary)  # one of the two, not both


def test_primary_rule_takes_jetson_vdd_in_alone_and_the_rails_without_it() -> None:
    roles = rail_roles(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"])
    chans = channel_map([(f"jetson:{k}", r.source_class, r.measures) for k, r in roles.items()])
    chans |= channel_map(
        [(f"tegrastats:{k}", r.source_class, r.measures) for k, r in roles.items()]
    )
    figs = {c: ChannelEnergy(5.0, 5.0, 5.0, 10, 1.0, 0.05, "trapezoid") for c in chans}
    primary = choose_primary(figs, chans)
    assert len(primary) == 1 and primary[0].endswith(":VDD_IN")
    del figs["jetson:VDD_IN"], figs["tegrastats:VDD_IN"]  # the total has no data
    parts = choose_primary(figs, chans)
    assert len(parts) == 2 and {p.split(":")[1] for p in parts} == {"VDD_CPU_GPU_CV", "VDD_SOC"}
