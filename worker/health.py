"""Readiness: does each service this process depends on answer, within a short deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from enum import StrEnum

import redis
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0
# Redis is asked with socket timeouts of its own, so a dead or blackholed server gives up on time.
REDIS_TIMEOUT_S = 1.0


class CheckResult(StrEnum):
    OK = "ok"
    DOWN = "down"  # answered with an error, or refused the connection
    TIMEOUT = "timeout"  # no answer before the deadline


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, CheckResult]  # service name → result, for each service configured

    @property
    def ready(self) -> bool:
        return all(result == CheckResult.OK for result in self.checks.values())

    @property
    def down(self) -> list[str]:
        return [name for name, result in self.checks.items() if result != CheckResult.OK]


def probe_redis(url: str) -> redis.Redis:
    """A client for readiness checks and scrapes: it gives up quickly instead of hanging."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
    )


def check_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_redis(client: redis.Redis) -> None:
    client.ping()


def readiness(
    executor: Executor,
    *,
    engine: Engine,
    redis_client: redis.Redis | None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> Readiness:
    """Check the database and (when configured) Redis at once, both within `timeout_s`.

    The checks run on `executor`, so one that hangs (a PostgreSQL host that drops packets: the
    connection attempt has no timeout of its own) is reported as a timeout and left to finish
    on its thread; a small executor keeps repeated probes from piling up threads.
    """
    checks: dict[str, Callable[[], None]] = {"database": lambda: check_database(engine)}
    if redis_client is not None:
        checks["redis"] = lambda: check_redis(redis_client)
    started = {name: executor.submit(check) for name, check in checks.items()}
    wait(started.values(), timeout=timeout_s)
    results: dict[str, CheckResult] = {}
    for name, future in started.items():
        if not future.done():
            future.cancel()  # still queued behind hung checks: never run it
            log.warning("readiness: %s did not answer within %s s", name, timeout_s)
            results[name] = CheckResult.TIMEOUT
        elif (error := future.exception()) is not None:
            # Whatever the driver raised, the service is not usable; the reason goes to the log
            # only (the probe answers the internet).
            log.warning("readiness: %s is down: %s", name, error)
            results[name] = CheckResult.DOWN
        else:
            results[name] = CheckResult.OK
    return Readiness(results)
