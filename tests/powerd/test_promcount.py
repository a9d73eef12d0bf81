"""Counter specs and reads against a real engine stand-in (prometheus-client over loopback HTTP):
label selection and sums, TGI's histogram sum, the read bracket, restarts and an endpoint down."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from powerd.promcount import CounterError, CounterSpec, CounterTrack, read_counter
from tests.powerd.engine import MODEL, OTHER_FACTOR, TOKENS_PER_REQUEST, Engine

RATE = 2000.0


@pytest.fixture
def engine() -> Iterator[Engine]:
    e = Engine(RATE)
    yield e
    e.stop()


def test_a_spec_parses_url_metric_and_labels() -> None:
    s = CounterSpec.parse('prom:http://h:8000/metrics#vllm:x_total{model_name="a,b", k = "q\\"}"}')
    assert s.url == "http://h:8000/metrics"
    assert s.metric == "vllm:x_total"
    assert s.labels == (("k", 'q"}'), ("model_name", "a,b"))
    for bad in (
        "http://h/metrics#x",
        "prom:http://h/metrics",
        "prom:ftp://h/metrics#x",
        "prom:http://h/metrics#1x",
        "prom:http://h/metrics#x{a=b}",
        'prom:http://h/metrics#x{a="b"',
    ):
        with pytest.raises(CounterError):
            CounterSpec.parse(bad)


def test_reads_select_by_label_sum_series_and_bracket_the_read(engine: Engine) -> None:
    url = engine.url
    one = read_counter(
        CounterSpec.parse(f'prom:{url}#vllm:generation_tokens_total{{model_name="{MODEL}"}}')
    )
    both = read_counter(CounterSpec.parse(f"prom:{url}#vllm:generation_tokens_total"))
    family = read_counter(CounterSpec.parse(f"prom:{url}#vllm:generation_tokens"))
    assert one.series == 1 and both.series == 2 and family.series == 2
    # the engine took its value inside the bracket: tokens(mid - h) <= value <= tokens(mid + h)
    lo = engine.tokens(one.t_ns - one.uncertainty_ns)
    hi = engine.tokens(one.t_ns + one.uncertainty_ns)
    assert lo <= one.value <= hi
    assert 0 < one.uncertainty_ns < 2_000_000_000
    assert both.value > one.value * OTHER_FACTOR  # the other model counts too, and more
    reqs = read_counter(
        CounterSpec.parse(f'prom:{url}#vllm:request_success_total{{model_name="{MODEL}"}}')
    )
    assert reqs.series == 2  # finished_reason "length" and "stop" summed
    tgi = read_counter(CounterSpec.parse(f"prom:{url}#tgi_request_generated_tokens_sum"))
    tgi_n = read_counter(CounterSpec.parse(f"prom:{url}#tgi_request_generated_tokens_count"))
    assert tgi.value >= one.value and tgi_n.value >= reqs.value
    assert tgi_n.value <= tgi.value / TOKENS_PER_REQUEST + 1
    with pytest.raises(CounterError, match="no series matches"):
        read_counter(
            CounterSpec.parse(f'prom:{url}#vllm:generation_tokens_total{{model_name="x"}}')
        )


def test_a_restart_is_seen_and_the_count_across_it_is_before_plus_after(engine: Engine) -> None:
    spec = CounterSpec.parse(
        f'prom:{engine.url}#vllm:generation_tokens_total{{model_name="{MODEL}"}}'
    )
    first = read_counter(spec)
    track = CounterTrack.start(first)
    time.sleep(0.3)
    before = read_counter(spec)
    track.feed(before)
    t_restart = engine.restart()
    time.sleep(0.2)
    after = read_counter(spec)
    track.feed(after)
    assert track.resets == 1
    # seen: first -> before, and 0 -> after; unseen: before -> restart, bounded by lost_bound
    seen = (before.value - first.value) + after.value
    assert track.increase == seen
    truth_lost = RATE * (t_restart - before.t_ns) / 1e9
    assert track.lost_bound >= truth_lost * 0.9
    # a restart where the value happens to be higher is still seen: the start time changed
    track2 = CounterTrack.start(read_counter(spec))
    time.sleep(0.05)
    engine.restart()
    time.sleep(0.3)
    track2.feed(read_counter(spec))
    assert track2.resets == 1


def test_an_endpoint_down_is_an_error_naming_it(engine: Engine) -> None:
    spec = CounterSpec.parse(f"prom:{engine.url}#vllm:generation_tokens_total")
    engine.stop()
    with pytest.raises(CounterError, match="unreachable"):
        read_counter(spec, timeout_s=1.0)
    engine.stop = lambda: None  # type: ignore[method-assign]


def test_count_from_is_a_begin_marker_key_of_prom_specs() -> None:
    from powerd.agent.wire import parse_marker
    from powerd.errors import MarkerError

    base = {"v": 1, "run": "r", "phase": "p"}
    spec = 'prom:http://h:1/metrics#vllm:generation_tokens_total{model_name="m"}'
    m = parse_marker({**base, "event": "begin", "count_from": spec})
    assert m.count_from == (spec,)
    assert parse_marker(m.to_json()) == m
    two = parse_marker({**base, "event": "begin", "count_from": [spec, spec + "x"]})
    assert two.count_from == (spec, spec + "x")
    for bad, event in (
        (spec, "end"),
        ("http://h/metrics#x", "begin"),
        ([], "begin"),
        ([spec] * 9, "begin"),
        (7, "begin"),
    ):
        with pytest.raises(MarkerError, match="count_from"):
            parse_marker({**base, "event": event, "count_from": bad})


def test_config_checks_every_counter_spec_up_front() -> None:
    from powerd import config
    from powerd.errors import PowerdError

    good = "prom:http://h:1/metrics#vllm:generation_tokens_total"
    cfg = config.parse(
        {
            "daemon": {"count_from": [good]},
            "efficiency": [{"device": "local", "counters": [{"source": good, "unit": "token"}]}],
        },
        "c: ",
    )
    assert cfg.count_from == (good,) and cfg.efficiency[0].interval_s == 10.0
    for data, why in (
        ({"daemon": {"count_from": ["prom:h#x"]}}, "expected prom:http"),
        ({"efficiency": [{"device": "d", "counters": []}]}, "counters is empty"),
        ({"efficiency": [{"device": "d", "counters": [{"source": "x"}]}]}, "must start with"),
        ({"efficiency": [{"device": "d", "counters": [{"source": good}], "poll_s": 20}]}, "poll_s"),
        ({"efficiency": [{"device": "d", "counters": [{"source": good, "typo": 1}]}]}, "typo"),
    ):
        with pytest.raises(PowerdError, match=why):
            config.parse(data, "c: ")
