"""A transport wrapped to count each message's result and time each call to the provider.

The figures are this process's own: in a `dramatiq worker.actors` process, dramatiq's Prometheus
middleware serves them with its own (on dramatiq_prom_port); elsewhere nobody reads them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from worker.transports.base import OutgoingMessage, SendResult, Transport

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

ACCEPTED = "accepted"
CALL_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class _Meters:
    results: Counter
    call_seconds: Histogram


@cache
def _meters() -> _Meters:
    # Imported on first use, not with this module: prometheus_client decides at import whether
    # values go to the shared files of a multi-process exporter, and dramatiq's middleware sets
    # PROMETHEUS_MULTIPROC_DIR only at process boot, after worker.actors (and so this) loaded.
    from prometheus_client import Counter, Histogram

    return _Meters(
        results=Counter(
            "verdicts_provider_results",
            "Messages handed to the provider, by transport and result: accepted, or the "
            "failure kind (transient, permanent, account, unknown).",
            ["transport", "result"],
        ),
        call_seconds=Histogram(
            "verdicts_provider_call_seconds",
            "Seconds per call to the transport (up to worker.sending.CHUNK_SIZE messages).",
            ["transport"],
            buckets=CALL_BUCKETS_S,
        ),
    )


class ObservedTransport:
    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.name = inner.name

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        meters = _meters()
        started = time.perf_counter()
        try:
            results = self.inner.send(messages)
        finally:
            meters.call_seconds.labels(self.name).observe(time.perf_counter() - started)
        for result in results:
            meters.results.labels(
                self.name, result.failure.value if result.failure else ACCEPTED
            ).inc()
        return results
