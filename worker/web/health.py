"""GET /healthz (the process is up), /readyz (its database and Redis answer), /metrics.

Load balancers and orchestrators poll the first two; Prometheus scrapes the third, which reads
the shared state (worker.metrics) and needs `Authorization: Bearer METRICS_TOKEN` when that is set.
"""

from __future__ import annotations

import hmac
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from worker import health, metrics
from worker.config import Settings

router = APIRouter()
# Enough for a few overlapping probes; hung checks beyond that make later probes time out
# rather than start ever more threads.
PROBE_THREADS = 4


@dataclass(frozen=True)
class Probes:
    executor: ThreadPoolExecutor
    redis_client: redis.Redis | None  # short timeouts: a dead Redis must not hang a probe

    @classmethod
    def of(cls, settings: Settings) -> Probes:
        client = health.probe_redis(settings.redis_url) if settings.redis_url else None
        return cls(ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probes"), client)


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    # Async on purpose: it answers from the event loop even when every request thread is busy,
    # so only a process that is really stuck fails it (and gets restarted).
    return "ok"


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    probes: Probes = request.app.state.probes
    found = health.readiness(
        probes.executor, engine=request.app.state.engine, redis_client=probes.redis_client
    )
    checks = {name: result.value for name, result in found.checks.items()}
    if found.ready:
        return JSONResponse({"status": "ready", "checks": checks})
    return JSONResponse(
        {"status": "unavailable", "down": found.down, "checks": checks}, status_code=503
    )


@router.get("/metrics")
def metrics_page(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token and not _bearer_matches(request, settings.metrics_token):
        return Response(
            "a bearer token is required\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    probes: Probes = request.app.state.probes
    registry = CollectorRegistry()  # per scrape: the collector reads the shared state each time
    registry.register(metrics.SharedStateCollector(request.app.state.engine, probes.redis_client))
    # The format the scraper asks for: OpenMetrics for Prometheus, else the classic text format.
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Constant-time, so the token cannot be guessed a character at a time from response times.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())
