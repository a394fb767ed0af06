"""GCRA as the API uses it in one process: bursts, pacing, and what the headers report."""

from __future__ import annotations

import pytest

from shared.ratelimit import US, Decision, LocalLimiter, Policy


class Clock:
    """Microseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000 * US

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * US)


def limiter(per_s: float, burst: int) -> tuple[LocalLimiter, Clock]:
    policy = Policy.of(per_s, burst)
    assert policy is not None
    clock = Clock()
    return LocalLimiter(policy, clock), clock


def test_a_zero_rate_or_burst_means_no_limit() -> None:
    assert Policy.of(0, 10) is None
    assert Policy.of(10, 0) is None
    assert Policy.of(10, 10) == Policy(10, 10)


def test_the_window_is_the_whole_seconds_a_full_burst_takes_to_come_back() -> None:
    assert Policy(100, 100).window_s == 1
    assert Policy(100, 250).window_s == 3
    assert Policy(0.5, 3).window_s == 6
    assert Policy(1000, 1).window_s == 1


def test_a_full_burst_passes_at_once_then_the_next_is_refused() -> None:
    limits, _ = limiter(per_s=10, burst=5)

    decisions = [limits.check("key_a") for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]


def test_a_refusal_says_when_one_request_would_pass_and_when_all_are_back() -> None:
    limits, _ = limiter(per_s=10, burst=5)
    for _ in range(5):
        limits.check("key_a")

    refused = limits.check("key_a")

    assert refused == Decision(False, 0, retry_after_us=100_000, reset_us=500_000)
    assert refused.retry_after_s == 1
    assert refused.reset_s == 1


def test_after_one_interval_exactly_one_more_passes() -> None:
    limits, clock = limiter(per_s=10, burst=5)
    for _ in range(5):
        limits.check("key_a")

    clock.advance(0.099)
    assert not limits.check("key_a").allowed
    clock.advance(0.001)
    assert limits.check("key_a").allowed
    assert not limits.check("key_a").allowed


def test_a_refused_request_does_not_push_the_next_one_back() -> None:
    limits, clock = limiter(per_s=10, burst=1)
    limits.check("key_a")
    for _ in range(50):
        assert not limits.check("key_a").allowed

    clock.advance(0.1)

    assert limits.check("key_a").allowed


def test_a_steady_client_at_the_rate_is_never_refused() -> None:
    limits, clock = limiter(per_s=50, burst=1)

    for _ in range(500):
        assert limits.check("key_a").allowed
        clock.advance(0.02)


def test_an_idle_key_gets_its_whole_burst_back_and_no_more() -> None:
    limits, clock = limiter(per_s=2, burst=3)
    for _ in range(3):
        limits.check("key_a")

    clock.advance(3600)

    assert [limits.check("key_a").allowed for _ in range(4)] == [True, True, True, False]


def test_allowed_answers_report_when_the_burst_is_whole_again() -> None:
    limits, _ = limiter(per_s=4, burst=4)

    first = limits.check("key_a")
    second = limits.check("key_a")

    assert first.reset_us == 250_000
    assert second.reset_us == 500_000
    assert second.retry_after_us == 0


def test_keys_are_limited_independently() -> None:
    limits, _ = limiter(per_s=1, burst=1)

    assert limits.check("key_a").allowed
    assert not limits.check("key_a").allowed
    assert limits.check("key_b").allowed


def test_keys_gone_idle_are_forgotten_and_busy_ones_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(LocalLimiter, "MAX_KEYS", 3)
    limits, clock = limiter(per_s=1, burst=2)
    limits.check("busy")
    limits.check("busy")

    for n in range(20):
        limits.check(f"other-{n}")
    assert not limits.check("busy").allowed

    for n in range(100):
        clock.advance(2)
        limits.check(f"passing-{n}")
    assert len(limits._tat) <= LocalLimiter.MAX_KEYS + 1
    assert [limits.check("busy").allowed for _ in range(3)] == [True, True, False]
