"""The one module with an effect at import: it picks the broker every actor is declared on.

With REDIS_URL, messages go to Redis and any number of `dramatiq worker.actors` processes share
them. Without it, an in-process StubBroker: the CLI runs the same actors on a Worker thread.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from worker import logs
from worker.config import get_settings


def make_broker(redis_url: str | None) -> dramatiq.Broker:
    if redis_url:
        redis_broker = RedisBroker(url=redis_url, namespace="verdicts")  # type: ignore[no-untyped-call]
        redis_broker.add_middleware(_prometheus())
        return redis_broker
    return StubBroker()


def _prometheus() -> dramatiq.Middleware:
    """Each worker process's figures, served for the host by a process the `dramatiq` CLI forks
    (dramatiq_prom_port, default 9191; dramatiq_prom_db, the files the processes share).

    Imported here, not above: the module makes its files' folder at import, which only Redis
    setups need. Elsewhere (web, scheduler, CLI) the middleware stays idle: its hooks run in a
    worker and the exporter only under the CLI. worker.actors must not import prometheus_client
    at import time, or the worker processes' figures would not reach the shared files.
    """
    from dramatiq.middleware.prometheus import Prometheus

    return Prometheus()


class LogSetup(dramatiq.Middleware):
    """Our log lines (LOG_FORMAT, LOG_LEVEL) in each `dramatiq worker.actors` process: dramatiq
    calls logging.basicConfig as it starts one, and this runs right after it has loaded the broker.
    """

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        logs.configure(get_settings())


broker = make_broker(get_settings().redis_url)
broker.add_middleware(LogSetup())
dramatiq.set_broker(broker)
