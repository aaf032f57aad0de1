"""The retry backoff formula of semantics.md §4 (the integration tests hold the server's SQL to it)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spooled_server.core.jobs import backoff_delay_secs


def test_the_default_schedule_in_minutes() -> None:
    # n = retry_count before the failure: 1, 2, 4, 8, 16, 32 minutes, then the 60-minute cap.
    assert [backoff_delay_secs(n, 60, 3600) / 60 for n in range(10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_other_base_and_cap() -> None:
    assert [backoff_delay_secs(n, 10, 45) for n in range(5)] == [10, 20, 40, 45, 45]
    assert [backoff_delay_secs(n, 1, 60) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize("n", [31, 32, 33, 100, 10**9])
def test_huge_retry_counts_give_the_cap_without_overflow(n: int) -> None:
    delay = backoff_delay_secs(n, 60, 3600)
    assert delay == 3600 and math.isfinite(delay)


def test_an_exponent_of_32_or_more_is_the_cap_even_with_a_huge_cap() -> None:
    cap = 10**12
    assert backoff_delay_secs(31, 1, cap) == 2**31
    assert backoff_delay_secs(32, 1, cap) == 2**32
    assert backoff_delay_secs(500, 1, cap) == 2**32  # the exponent stops at 32


def test_jitter_adds_up_to_j_times_the_delay_and_never_passes_the_cap() -> None:
    assert backoff_delay_secs(0, 60, 3600, jitter=0.5, draw=0.0) == 60
    assert backoff_delay_secs(0, 60, 3600, jitter=0.5, draw=0.999) == pytest.approx(60 + 0.5 * 0.999 * 60)
    assert backoff_delay_secs(5, 60, 3600, jitter=1.0, draw=0.9) == 3600  # 1920 + 1728 is over the cap
    assert backoff_delay_secs(2, 60, 3600, jitter=0.0, draw=0.9) == 240


@given(
    n=st.integers(0, 200),
    base=st.integers(1, 3600),
    cap=st.integers(1, 86400),
    jitter=st.floats(0, 1),
    draw=st.floats(0, 1, exclude_max=True),
)
def test_properties(n: int, base: int, cap: int, jitter: float, draw: float) -> None:
    plain = backoff_delay_secs(n, base, cap)
    jittered = backoff_delay_secs(n, base, cap, jitter, draw)
    assert 0 < plain <= cap
    assert plain <= jittered <= cap
    assert jittered <= plain * (1 + jitter) + 1e-9
    assert backoff_delay_secs(n + 1, base, cap) >= plain  # never shrinks as retries add up
    if base * 2 ** min(n, 32) <= cap:
        assert plain == base * 2 ** min(n, 32)
