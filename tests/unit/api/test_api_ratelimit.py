"""Token buckets: burst, refill at the configured rate, bounded memory."""

from cxrwatch.api.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)

    admitted = [limiter.take("a") for _ in range(4)]
    clock.now += 1.0
    after_a_second = limiter.take("a")

    assert admitted[:3] == [0.0, 0.0, 0.0]
    assert admitted[3] == 1.0
    assert after_a_second == 0.0


def test_callers_have_separate_buckets() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=Clock())

    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_exhausted_does_not_spend() -> None:
    limiter = RateLimiter(per_minute=60, burst=1, clock=Clock())

    assert limiter.exhausted("a") == 0.0
    assert limiter.exhausted("a") == 0.0
    assert limiter.take("a") == 0.0
    assert limiter.exhausted("a") == 1.0


def test_memory_stays_bounded() -> None:
    limiter = RateLimiter(per_minute=60, burst=2, clock=Clock(), max_buckets=10)

    for caller in range(100):
        limiter.take(f"caller-{caller}")

    assert len(limiter._buckets) <= 10
