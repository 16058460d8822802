"""Percentiles, cost per audio minute, break-even utilisation and Server-Timing parsing."""

import numpy as np
import pytest

from bench.cost import InstanceShape, PriceTable, estimate_cost, openai_cost
from bench.server_timing import mean_steps, parse_server_timing
from bench.stats import LatencySummary, percentile


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q: float) -> None:
    values = [0.9, 0.1, 0.5, 2.0, 0.7, 1.3, 0.2]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_refuses_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary() -> None:
    summary = LatencySummary.of([1.0, 2.0, 3.0, 4.0])
    assert summary is not None
    assert (summary.min, summary.p50, summary.mean, summary.max, summary.count) == (1.0, 2.5, 2.5, 4.0, 4)
    assert summary.p90 == pytest.approx(3.7)
    assert LatencySummary.of([]) is None


def test_instance_cost_per_second_from_the_price_table() -> None:
    prices = PriceTable()
    # 1 L4 (no zonal redundancy) + 4 vCPU + 16 GiB
    assert InstanceShape().cost_per_second(prices) == pytest.approx(0.0001867 + 4 * 0.000018 + 16 * 0.000002)
    redundant = InstanceShape(zonal_redundancy=True).cost_per_second(prices)
    assert redundant == pytest.approx(0.0002909 + 4 * 0.000018 + 16 * 0.000002)
    assert prices.as_of and prices.source  # a price without a date and source cannot be checked


def test_cost_per_audio_minute_and_break_even() -> None:
    prices, shape = PriceTable(), InstanceShape()
    per_second = shape.cost_per_second(prices)
    # 600 s of audio in 60 s of wall time: 10 audio seconds per second.
    estimate = estimate_cost(audio_seconds=600, wall_seconds=60, shape=shape, prices=prices)
    assert estimate.audio_seconds_per_wall_second == pytest.approx(10)
    assert estimate.self_hosted_per_audio_minute == pytest.approx(per_second * 6)
    # One busy hour processes 600 audio minutes, which OpenAI prices at $3.60.
    assert estimate.break_even_utilisation == pytest.approx(per_second * 3600 / 3.6)
    assert estimate.run_instance_cost == pytest.approx(per_second * 60)
    assert estimate.run_openai_cost == pytest.approx(0.06) == openai_cost(600, prices)


def test_break_even_above_one_means_never() -> None:
    # Slow throughput: the instance costs more per hour than OpenAI would for a full hour's output.
    estimate = estimate_cost(audio_seconds=1, wall_seconds=10, shape=InstanceShape(), prices=PriceTable())
    assert estimate.break_even_utilisation is not None and estimate.break_even_utilisation > 1


def test_break_even_is_where_the_costs_meet() -> None:
    prices, shape = PriceTable(), InstanceShape()
    estimate = estimate_cost(audio_seconds=3000, wall_seconds=100, shape=shape, prices=prices)
    u = estimate.break_even_utilisation
    assert u is not None
    # At utilisation u, an hour of instance time costs what OpenAI charges for u hours of its output.
    openai_for_u_hours = (
        u * 3600 * estimate.audio_seconds_per_wall_second / 60 * prices.openai_whisper_per_audio_minute
    )
    assert shape.cost_per_hour(prices) == pytest.approx(openai_for_u_hours)


def test_cost_refuses_zero_wall_time() -> None:
    with pytest.raises(ValueError):
        estimate_cost(10, 0, InstanceShape(), PriceTable())


def test_parse_server_timing() -> None:
    header = 'read;dur=1.5, decode;dur=20, queue;dur=0.1;desc="waited, briefly", inference;dur=830.25, cache'
    assert parse_server_timing(header) == {"read": 1.5, "decode": 20.0, "queue": 0.1, "inference": 830.25}


def test_parse_server_timing_skips_malformed_entries() -> None:
    assert parse_server_timing(None) == {}
    assert parse_server_timing("") == {}
    assert parse_server_timing("total;dur=abc, format;DUR=2, ;dur=3, miss;desc=x") == {"format": 2.0}


def test_mean_steps_over_the_samples_that_report_each_step() -> None:
    assert mean_steps([{"a": 1.0, "b": 4.0}, {"a": 3.0}]) == {"a": 2.0, "b": 4.0}
