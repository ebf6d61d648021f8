"""Send-rate limits: the bucket grants about 95% of the rate and never more than the rate in any
one-second window, in one process (fake clock, no sleeping) and across processes (real Redis).
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import pytest
import redis

from tests.conftest import service_unavailable
from worker.ratelimit import LocalTokenBucket, RedisTokenBucket, Unlimited

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379

Grant = tuple[float, int]  # (clock reading when granted, how many sends were granted)
TimedGrant = tuple[float, float, int]  # (asked at, answered at, how many were granted)


class FakeClock:
    """A monotonic clock that only moves when the bucket sleeps.

    Like time.monotonic_ns it ticks in nanoseconds: a real sleep never returns before the clock
    has moved, so a sleep shorter than a tick still advances it by one.
    """

    TICK_S = 1e-9

    def __init__(self) -> None:
        self.now_s = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"asked to sleep a negative time: {seconds}"
        self.sleeps += 1
        assert self.sleeps < 1_000_000, "the bucket keeps sleeping without granting"
        self.now_s += max(seconds, self.TICK_S)

    def idle(self, seconds: float) -> None:
        self.now_s += seconds


def local_bucket(rate_per_s: float) -> tuple[LocalTokenBucket, FakeClock]:
    clock = FakeClock()
    return LocalTokenBucket(rate_per_s, clock=clock, sleep=clock.sleep), clock


def demand_for(
    bucket: LocalTokenBucket, clock: FakeClock, *, seconds: float, wanted: int
) -> list[Grant]:
    """Ask for `wanted` sends again and again, as fast as granted, for `seconds` of fake time."""
    grants: list[Grant] = []
    while True:
        granted = bucket.acquire(wanted)
        if clock() >= seconds:
            return grants
        grants.append((clock(), granted))


def busiest_second(grants: Sequence[Grant]) -> int:
    """The most sends granted in any window [t, t + 1 s); the busiest one starts at a grant."""
    ordered = sorted(grants)
    times = [at for at, _ in ordered]
    running = [0]
    for _, granted in ordered:
        running.append(running[-1] + granted)
    busiest = 0
    for start, at in enumerate(times):
        end = bisect.bisect_left(times, at + 1.0)
        busiest = max(busiest, running[end] - running[start])
    return busiest


# --- LocalTokenBucket -----------------------------------------------------------------------


@pytest.mark.parametrize("wanted", [1, 50])
@pytest.mark.parametrize("rate_per_s", [14, 20, 100, 1000])
def test_under_continuous_demand_about_95_percent_of_the_rate_is_granted(
    rate_per_s: int, wanted: int
) -> None:
    bucket, clock = local_bucket(rate_per_s)
    grants = demand_for(bucket, clock, seconds=10, wanted=wanted)
    total = sum(granted for _, granted in grants)
    assert 0.9 * rate_per_s * 10 <= total <= 0.96 * rate_per_s * 10


@pytest.mark.parametrize("wanted", [1, 50])
@pytest.mark.parametrize("rate_per_s", [1, 2, 10, 14, 19, 20, 100, 1000])
def test_no_sliding_one_second_window_is_granted_more_than_the_rate(
    rate_per_s: int, wanted: int
) -> None:
    bucket, clock = local_bucket(rate_per_s)
    grants = demand_for(bucket, clock, seconds=10, wanted=wanted)
    assert grants, "nothing was granted"
    assert busiest_second(grants) <= rate_per_s


@pytest.mark.parametrize("rate_per_s", [1.5, 5.5])
def test_a_fractional_rate_is_not_exceeded_in_any_one_second_window(rate_per_s: float) -> None:
    bucket, clock = local_bucket(rate_per_s)
    grants = demand_for(bucket, clock, seconds=10, wanted=1)
    assert busiest_second(grants) <= rate_per_s


def test_acquire_grants_at_least_one_and_never_more_than_asked() -> None:
    bucket, clock = local_bucket(100)
    for step in range(400):
        wanted = step % 60 + 1
        if step % 37 == 0:
            clock.idle(0.5)  # now and then the bucket refills to its burst
        granted = bucket.acquire(wanted)
        assert 1 <= granted <= wanted


def test_an_empty_bucket_waits_for_the_next_token_instead_of_granting_none() -> None:
    bucket, clock = local_bucket(100)
    assert bucket.acquire(1_000) == 1  # the whole burst: one token
    assert clock() == 0.0 and clock.sleeps == 0
    assert bucket.acquire(10) == 1
    assert clock() == pytest.approx(1 / 95)  # one token refills at 95% of 100/s


@pytest.mark.parametrize("rate_per_s", [0.5, 10, 14, 20, 100, 1000])
def test_an_idle_bucket_holds_one_token(rate_per_s: float) -> None:
    # One token: a limited sender takes it right before each call, so calls cannot bunch up.
    bucket, clock = local_bucket(rate_per_s)
    assert bucket.acquire(100_000) == 1  # a new bucket starts full
    clock.idle(3600)
    assert bucket.acquire(100_000) == 1  # an hour idle saves up no more
    assert clock.sleeps == 0


@pytest.mark.parametrize("rate_per_s", [0, 0.0, -1, -0.5])
def test_a_rate_that_is_not_positive_is_refused(rate_per_s: float) -> None:
    with pytest.raises(ValueError, match="send rate must be positive"):
        LocalTokenBucket(rate_per_s)
    with pytest.raises(ValueError, match="send rate must be positive"):
        RedisTokenBucket(redis.Redis(host=REDIS_HOST, port=REDIS_PORT), rate_per_s)


# --- Unlimited --------------------------------------------------------------------------------


def test_unlimited_grants_everything_asked_for() -> None:
    assert Unlimited().acquire(7) == 7


# --- RedisTokenBucket (the real server) -------------------------------------------------------


def redis_client() -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2)


@pytest.fixture
def bucket_key() -> Iterator[str]:
    """A fresh bucket key on the local Redis, deleted afterwards."""
    client = redis_client()
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        service_unavailable("Redis", error)
    key = f"test:send-rate:{uuid.uuid4().hex}"
    try:
        yield key
    finally:
        client.delete(key)
        client.close()


def busiest_second_for_certain(grants: Sequence[TimedGrant]) -> int:
    """The most sends granted within any window [t, t + 1 s), counting only grants whose whole
    (asked, answered) span lies in it, so a thread descheduled around its Redis call cannot
    make grants look closer together than they were."""
    busiest = 0
    for window_start, _, _ in grants:
        window_end = window_start + 1.0
        inside = sum(
            granted
            for asked_at, answered_at, granted in grants
            if asked_at >= window_start and answered_at < window_end
        )
        busiest = max(busiest, inside)
    return busiest


def test_redis_buckets_sharing_a_key_together_stay_under_the_rate_in_every_second(
    bucket_key: str,
) -> None:
    rate_per_s = 200
    run_s = 2.0
    grants: list[TimedGrant] = []
    grants_lock = threading.Lock()
    failures: list[BaseException] = []
    start = threading.Barrier(2)
    started_at = time.monotonic()

    def demand() -> None:
        """One worker: its own connection and bucket on the shared key, asking like send_batch."""
        client = redis_client()
        asked_at = time.monotonic()

        def sleep(seconds: float) -> None:
            nonlocal asked_at
            time.sleep(seconds)
            asked_at = time.monotonic()  # the call that grants comes after the last sleep

        try:
            bucket = RedisTokenBucket(client, rate_per_s, key=bucket_key, sleep=sleep)
            start.wait()
            while True:
                asked_at = time.monotonic()
                granted = bucket.acquire(50)
                answered_at = time.monotonic()
                if answered_at - started_at >= run_s:
                    return
                with grants_lock:
                    grants.append((asked_at, answered_at, granted))
        except BaseException as error:
            failures.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=demand) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    total = sum(granted for _, _, granted in grants)
    assert busiest_second_for_certain(grants) <= rate_per_s
    assert total / run_s >= 0.85 * rate_per_s


def test_a_fresh_redis_bucket_grants_its_burst_and_expires_when_unused(bucket_key: str) -> None:
    client = redis_client()
    try:
        bucket = RedisTokenBucket(client, 200, key=bucket_key)
        assert bucket.acquire(1_000) == 1  # the burst is one token
        assert 0 < client.pttl(bucket_key) <= 60_000
    finally:
        client.close()
