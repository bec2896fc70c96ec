"""Docker step retries wait with capped exponential backoff and equal jitter:
attempt n waits a delay drawn uniformly from [c/2, c], where
c = min(MAX_BACKOFF_S, retry_backoff_s * 2^(n-1)). Many seeded draws per
attempt check the bounds, the cap and that the delays grow."""

from __future__ import annotations

import random
import statistics

import pytest

from workers import docker_step
from workers.docker_step import MAX_BACKOFF_S, backoff_delay

SAMPLES = 2000
MAX_ATTEMPT = 11  # a step may retry 10 times (specs), so attempts 1..10 wait


@pytest.fixture(autouse=True)
def seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Draws from a seeded generator, so every run sees the same delays."""
    monkeypatch.setattr(docker_step, "random", random.Random(15))


def ceiling(base_s: float, attempt: int) -> float:
    return min(MAX_BACKOFF_S, base_s * 2 ** (attempt - 1))


def draws(base_s: float, attempt: int) -> list[float]:
    return [backoff_delay(base_s, attempt) for _ in range(SAMPLES)]


@pytest.mark.parametrize("base_s", [0.5, 1.0, 7.0])
def test_every_delay_is_between_half_and_all_of_the_capped_exponential(base_s: float) -> None:
    for attempt in range(1, MAX_ATTEMPT):
        c = ceiling(base_s, attempt)
        delays = draws(base_s, attempt)
        assert all(c / 2 <= d <= c for d in delays), (attempt, min(delays), max(delays))
        # The draws fill the whole range (equal jitter), not one end or a point:
        # 2,000 uniform draws come within 5 % of each end and average near 3c/4.
        assert min(delays) < 0.55 * c and max(delays) > 0.95 * c, attempt
        assert 0.72 * c < statistics.fmean(delays) < 0.78 * c, attempt


def test_the_mean_delay_doubles_per_attempt_until_the_cap() -> None:
    means = [statistics.fmean(draws(1.0, attempt)) for attempt in range(1, MAX_ATTEMPT)]
    capped_from = next(n for n in range(1, MAX_ATTEMPT) if 2 ** (n - 1) >= MAX_BACKOFF_S)
    assert capped_from == 10  # 1 s doubled: 256 s at attempt 9, capped at 300 s from 10
    for n in range(1, capped_from - 1):  # means[n - 1] is attempt n
        assert 1.8 < means[n] / means[n - 1] < 2.2, (n, means[n - 1], means[n])
    # The last uncapped step grows less than double (256 -> 300), but still grows.
    assert means[capped_from - 1] > means[capped_from - 2]


@pytest.mark.parametrize("base_s", [1.0, 300.0, 3600.0])  # 3600 s is the largest a spec allows
def test_the_cap_bounds_every_delay(base_s: float) -> None:
    assert MAX_BACKOFF_S == 300.0  # the README's number
    for attempt in range(1, MAX_ATTEMPT):
        delays = draws(base_s, attempt)
        assert max(delays) <= MAX_BACKOFF_S
        if base_s * 2 ** (attempt - 1) >= MAX_BACKOFF_S:
            assert min(delays) >= MAX_BACKOFF_S / 2  # capped, still jittered
            assert max(delays) > 0.95 * MAX_BACKOFF_S


def test_first_attempt_waits_about_the_base_and_no_base_means_no_wait() -> None:
    assert all(0.5 <= d <= 1.0 for d in draws(1.0, 1))
    assert all(0.5 <= d <= 1.0 for d in draws(1.0, 0))  # never below the first step
    assert draws(0.0, 1) == [0.0] * SAMPLES and draws(0.0, 10) == [0.0] * SAMPLES
