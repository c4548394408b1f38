"""The cost model of ``bench/cost.py``: billed duration by memory size, and the prices."""

from __future__ import annotations

import pytest

from bench.cost import (
    PRICE_GB_SECOND,
    PRICE_REQUEST,
    billed_ms,
    duration_ms,
    invocation_cost,
    item_size,
    per_million,
    recommend,
    vcpus,
)


def test_one_vcpu_at_1769_mb_and_six_at_most() -> None:
    assert vcpus(1769) == 1
    assert vcpus(512) == pytest.approx(0.289, abs=0.001)
    assert vcpus(10_240) == pytest.approx(5.79, abs=0.01)
    assert vcpus(20_000) == 6


def test_cpu_bound_duration_halves_when_memory_doubles_below_one_vcpu() -> None:
    single = [billed_ms(duration_ms(0, 1000, 1, m)) for m in (442, 884, 1769)]
    assert single == [4003, 2002, 1000]
    assert billed_ms(duration_ms(0, 1000, 1, 512)) == pytest.approx(
        2 * billed_ms(duration_ms(0, 1000, 1, 1024)), abs=1
    )


def test_duration_stops_shrinking_above_the_usable_parallelism() -> None:
    # One thread: nothing gained above 1,769 MB.
    assert duration_ms(0, 1000, 1, 3008) == duration_ms(0, 1000, 1, 1769) == 1000
    # Two threads: faster up to two vCPUs (3,538 MB), then flat.
    assert duration_ms(0, 1000, 2, 3008) == pytest.approx(1000 / (3008 / 1769))
    assert duration_ms(0, 1000, 2, 3538) == duration_ms(0, 1000, 2, 7076) == 500


def test_io_does_not_shrink_with_memory() -> None:
    assert duration_ms(100, 0, 1, 512) == duration_ms(100, 0, 1, 3008) == 100
    assert duration_ms(100, 289, 1, 512) == pytest.approx(100 + 289 / (512 / 1769))


def test_billed_in_whole_milliseconds_rounded_up() -> None:
    assert billed_ms(100.0) == 100
    assert billed_ms(100.01) == 101
    assert billed_ms(0.2) == 1


def test_price_arithmetic() -> None:
    # 1 GB for 1 s on x86_64: one GB-second plus one request.
    x86 = PRICE_GB_SECOND["x86_64"]
    assert invocation_cost(1024, 1000, x86) == pytest.approx(0.0000166667 + 0.20 / 1e6)
    assert per_million(0, 1000, 1, 1769, x86) == pytest.approx(
        1769 / 1024 * 0.0000166667 * 1e6 + 0.20
    )
    # 512 MB for 100 ms on arm64.
    arm = PRICE_GB_SECOND["arm64"]
    assert invocation_cost(512, 100, arm) == pytest.approx(0.5 * 0.1 * 0.0000133334 + 2e-7)
    assert abs(PRICE_REQUEST * 1e6 - 0.20) < 1e-12
    # A CPU-bound upload costs the same GB-seconds at every size up to one vCPU.
    small, large = per_million(0, 1000, 1, 512, x86), per_million(0, 1000, 1, 1769, x86)
    assert small == pytest.approx(large, rel=0.001)


def test_recommend_cheapest_and_fastest_within_ten_percent() -> None:
    costs = {512: 10.0, 1024: 10.9, 1769: 12.0}
    durations = {512: 1000.0, 1024: 600.0, 1769: 400.0}
    assert recommend(costs, durations) == (512, 1024)
    assert recommend({1024: 5.0}, {1024: 1.0}) == (1024, 1024)
    assert recommend({}, {}) is None


def test_item_size_counts_names_and_values() -> None:
    item = {"pk": {"S": "IMG#abc"}, "n": {"N": "12"}, "m": {"M": {"a": {"S": "xy"}}}}
    # "pk" 2 + 7; "n" 1 + 2; "m" 1 + 3 + ("a" 1 + 2 + 1)
    assert item_size(item) == 9 + 3 + 8
