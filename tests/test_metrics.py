"""Health, readiness and metrics: /healthz, /readyz, /metrics read from the shared state, and the
workers' own exporter (dramatiq's Prometheus middleware).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, update
from sqlmodel import col, select

from tests.conftest import EXAMPLE, flushed_redis, postgres_schema_url
from tests.helpers import add_subscribers, example_payload, send_week, store_payload
from tests.live_site import LiveSite, free_port
from tests.test_ses import message
from worker import actors, broker, db, metrics
from worker.config import Settings
from worker.models import (
    Delivery,
    DeliveryState,
    Event,
    EventKind,
    FireOutcome,
    Schedule,
    ScheduleFire,
    SchedulerBeat,
)
from worker.transports.base import FailureKind
from worker.transports.memory import MemoryTransport
from worker.transports.observed import ObservedTransport
from worker.web import create_app

REDIS_URL = os.environ.get("TEST_METRICS_REDIS_URL", "redis://127.0.0.1:6379/12")
READERS = tuple(f"r{i}@example.com" for i in range(10))
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def redis_db() -> Iterator[str]:
    yield from flushed_redis(REDIS_URL)


def samples(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def closed_port_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


def migrate(settings: Settings) -> None:
    engine = db.make_engine(settings)
    db.upgrade(engine)
    engine.dispose()


def app_on(engine: Engine, settings: Settings) -> FastAPI:
    app = create_app(settings)
    app.state.engine = engine
    return app


# --- /healthz and /readyz ---


def test_healthz_answers_while_the_database_is_down(settings: Settings) -> None:
    app = create_app(settings)
    app.state.engine = create_engine(closed_port_url("postgresql+psycopg") + "/gone")
    with TestClient(app) as client:
        answer = client.get("/healthz")
    assert (answer.status_code, answer.text) == (200, "ok")


def test_readyz_is_ready_when_the_embedded_database_answers(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_names_the_database_when_it_is_down_and_shows_no_traceback(
    settings: Settings,
) -> None:
    app = create_app(settings)
    app.state.engine = create_engine(closed_port_url("postgresql+psycopg") + "/gone")
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "down": ["database"],
        "checks": {"database": "down"},
    }


@pytest.mark.postgres
def test_readyz_is_ready_when_postgres_and_redis_answer(
    settings: Settings, pg_schema: str, redis_db: str
) -> None:
    on_services = settings.model_copy(
        update={"database_url": postgres_schema_url(pg_schema), "redis_url": redis_db}
    )
    migrate(on_services)
    with TestClient(create_app(on_services)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.postgres
def test_readyz_names_redis_quickly_when_its_port_is_closed(
    settings: Settings, pg_schema: str
) -> None:
    on_services = settings.model_copy(
        update={
            "database_url": postgres_schema_url(pg_schema),
            "redis_url": closed_port_url("redis"),
        }
    )
    migrate(on_services)
    with TestClient(create_app(on_services)) as client:
        started = time.monotonic()
        answer = client.get("/readyz")
        took_s = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json()["down"] == ["redis"]
    assert answer.json()["checks"] == {"database": "ok", "redis": "down"}
    assert took_s < 3


# --- /metrics from the database ---


@pytest.fixture
def sent_with_failures(engine: Engine, settings: Settings) -> MemoryTransport:
    """The week sent to ten readers: one refused by SES for good, one never answered."""
    store_payload(engine, example_payload())
    add_subscribers(engine, *READERS)
    transport = MemoryTransport()
    transport.fail_next(
        READERS[0], FailureKind.PERMANENT, "SES MessageRejected: Email address is not verified."
    )
    transport.fail_next(READERS[1], FailureKind.UNKNOWN, "SES did not answer: Read timeout")
    send_week(engine, settings, transport)
    return transport


def scrape(app: FastAPI, **headers: str) -> httpx.Response:
    with TestClient(app) as client:
        answer: httpx.Response = client.get("/metrics", headers=headers)
    return answer


def test_metrics_after_a_send_match_the_database(
    engine: Engine, settings: Settings, sent_with_failures: MemoryTransport
) -> None:
    answer = scrape(app_on(engine, settings))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(answer.text)
    with db.session_scope(engine) as session:
        states = [d.state for d in session.exec(select(Delivery))]
    for state in DeliveryState:
        assert value(found, "verdicts_deliveries", state=state.value) == states.count(state)
    assert value(found, "verdicts_messages_sent_total") == states.count(DeliveryState.SENT) == 8
    assert value(found, "verdicts_messages_failed_total", reason="message_rejected") == 1
    assert value(found, "verdicts_messages_failed_total", reason="other") == 0
    assert value(found, "verdicts_deliveries_uncertain", reason="no_answer") == 1
    # Eight sent within the last minute, by an edition that finished within it.
    assert value(found, "verdicts_send_rate_messages_per_second") == pytest.approx(8 / 60)
    assert value(found, "verdicts_editions", status="sent") == 1
    assert value(found, "verdicts_metrics_source_up", source="database") == 1
    assert value(found, "verdicts_metrics_source_up", source="redis") is None  # not configured


def test_send_rate_leaves_out_editions_that_finished_before_the_last_minute(
    engine: Engine, settings: Settings, sent_with_failures: MemoryTransport
) -> None:
    figures = read(engine, now=datetime.now(UTC) + timedelta(minutes=2))
    assert figures.sent_in_window == 0
    assert figures.deliveries[DeliveryState.SENT] == 8  # the counter stays


def read(engine: Engine, *, now: datetime) -> metrics.Figures:
    with engine.connect() as connection:
        return metrics.read_figures(connection, now=now)


def test_failures_are_counted_by_a_bounded_set_of_reasons(
    engine: Engine, settings: Settings, sent_with_failures: MemoryTransport
) -> None:
    errors = {
        DeliveryState.FAILED: [
            "gave up after 20 attempts: SES Throttling: Maximum sending rate exceeded.",
            "cannot build message: bad header",
            "recipient x@example.com refused: 550 5.1.1 no such user",
            "SES BadRequestException: Missing final '@domain'",
            "SES MessageRejected: Email address is not verified.",
            "the provider said something new",
        ],
        DeliveryState.UNCERTAIN: [
            "lease expired while sending",
            "interrupted mid-send",
            "SES did not answer: Read timeout",
        ],
    }
    with db.session_scope(engine) as session:
        ids = iter(session.exec(select(Delivery.id).order_by(col(Delivery.id))).all())
        for state, reasons in errors.items():
            for reason in reasons:
                session.execute(
                    update(Delivery)
                    .where(col(Delivery.id) == next(ids))
                    .values(state=state, last_error=reason)
                )
    figures = read(engine, now=datetime.now(UTC))
    assert figures.failed_by_reason == {
        "retries_exhausted": 1,
        "invalid_message": 1,
        "message_rejected": 1,
        "recipient_refused": 1,
        "provider_refused": 1,
        "other": 1,
    }
    assert figures.uncertain_by_reason == {
        "no_answer": 1,
        "interrupted": 1,
        "lease_expired": 1,
        "other": 0,
    }


def test_ses_events_schedule_fires_and_scheduler_heartbeat(engine: Engine) -> None:
    with db.session_scope(engine) as session:
        for number, kind in enumerate([EventKind.DELIVERY, EventKind.DELIVERY, EventKind.BOUNCE]):
            session.add(Event(kind=kind, at=NOW, provider_event_id=f"ses-{number}"))
        session.add(Event(kind=EventKind.OPEN, at=NOW))  # our own pixel: not an SES event
        schedule = Schedule(name="weekly", cron="0 9 * * MON", timezone="UTC", created_at=NOW)
        session.add(schedule)
        session.flush()
        assert schedule.id is not None
        for period, fire_at, outcome in [
            ("2026-W47", NOW - timedelta(days=7), FireOutcome.SENDING),
            ("2026-W48", NOW - timedelta(minutes=30), FireOutcome.NO_COMPARISON),
            ("2026-W49", NOW + timedelta(days=7), FireOutcome.SKIPPED),  # by an operator
        ]:
            session.add(
                ScheduleFire(
                    schedule_id=schedule.id,
                    period_key=period,
                    fire_at=fire_at,
                    outcome=outcome,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
        for instance, seen_at in [
            ("a", NOW - timedelta(seconds=45)),
            ("b", NOW - timedelta(hours=2)),
        ]:
            session.add(SchedulerBeat(instance=instance, started_at=seen_at, seen_at=seen_at))
    registry = CollectorRegistry()
    registry.register(metrics.SharedStateCollector(engine, None, clock=lambda: NOW))
    found = samples(generate_latest(registry).decode())
    assert value(found, "verdicts_ses_events_total", kind="delivery") == 2
    assert value(found, "verdicts_ses_events_total", kind="bounce") == 1
    assert value(found, "verdicts_ses_events_total", kind="open") is None
    fired = value(found, "verdicts_schedule_last_fire_timestamp_seconds", schedule="weekly")
    assert fired == (NOW - timedelta(minutes=30)).timestamp()
    assert value(found, "verdicts_scheduler_heartbeat_age_seconds") == 45


def test_no_scheduler_heartbeat_means_no_age_rather_than_zero(
    engine: Engine, settings: Settings
) -> None:
    found = samples(scrape(app_on(engine, settings)).text)
    assert value(found, "verdicts_scheduler_heartbeat_age_seconds") is None
    assert value(found, "verdicts_messages_sent_total") == 0


def test_metrics_need_the_bearer_token_when_one_is_set(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "s3cret-scrape-token"}))
    refused = scrape(app)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "verdicts_" not in refused.text
    assert scrape(app, Authorization="Bearer wrong-token").status_code == 401
    assert scrape(app, Authorization="Basic s3cret-scrape-token").status_code == 401
    assert scrape(app, Authorization="Bearer s3cret-scrape-token").status_code == 200


def test_metrics_are_open_when_no_token_is_set(settings: Settings) -> None:
    assert scrape(create_app(settings)).status_code == 200


def test_metrics_still_answer_when_redis_is_down_and_say_so(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"redis_url": closed_port_url("redis")}))
    answer = scrape(app)
    assert answer.status_code == 200
    found = samples(answer.text)
    assert value(found, "verdicts_metrics_source_up", source="redis") == 0
    assert value(found, "verdicts_metrics_source_up", source="database") == 1
    assert value(found, "verdicts_messages_sent_total") == 0


# --- the dramatiq queue in Redis ---


def test_queue_names_match_the_broker_and_the_actors() -> None:
    made = broker.make_broker(REDIS_URL)
    assert isinstance(made, RedisBroker)
    assert made.namespace == metrics.QUEUE_NAMESPACE
    assert metrics.QUEUES == (actors.QUEUE,)


def test_queue_depth_follows_dramatiq_through_its_redis_keys(redis_db: str) -> None:
    import redis

    made = broker.make_broker(redis_db)
    for number in range(3):
        made.enqueue(Message("verdicts", "send_batch", (1, [number]), {}, {}))
    made.enqueue(Message("verdicts", "reconcile", (1,), {}, {}), delay=60_000)
    client = redis.Redis.from_url(redis_db)

    def depths() -> dict[str, int]:
        return {d.state: d.messages for d in metrics.queue_depths(client)}

    assert depths() == {"ready": 3, "unacked": 0, "delayed": 1, "dead": 0}
    consumer = made.consume("verdicts", prefetch=1, timeout=1000)
    fetched = next(consumer)
    assert fetched is not None
    assert depths() == {"ready": 2, "unacked": 1, "delayed": 1, "dead": 0}
    consumer.ack(fetched)
    assert depths() == {"ready": 2, "unacked": 0, "delayed": 1, "dead": 0}
    consumer.close()
    client.close()


# --- the workers' exporter ---


def test_only_the_redis_broker_carries_the_prometheus_middleware() -> None:
    from dramatiq.middleware.prometheus import Prometheus

    def has_exporter(made: object) -> bool:
        return any(isinstance(m, Prometheus) for m in getattr(made, "middleware", []))

    assert not has_exporter(broker.make_broker(None))
    assert has_exporter(broker.make_broker(REDIS_URL))


def test_loading_the_actors_leaves_prometheus_client_unloaded(tmp_path: Path) -> None:
    # dramatiq loads worker.actors before its middleware points prometheus_client at the shared
    # files; had prometheus_client loaded already, each worker process would count to itself.
    check = "import sys, worker.actors; print('prometheus_client' in sys.modules)"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": REDIS_URL,  # the Redis broker, with the middleware (nothing connects)
        "dramatiq_prom_db": str(tmp_path / "prometheus"),
    }
    done = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr


def test_provider_results_are_counted_by_kind_and_calls_timed() -> None:
    mail = MemoryTransport(name="memory-observed")
    mail.fail_next("b@example.com", FailureKind.TRANSIENT)
    observed = ObservedTransport(mail)

    def count(result: str) -> float:
        labels = {"transport": "memory-observed", "result": result}
        return REGISTRY.get_sample_value("verdicts_provider_results_total", labels) or 0

    results = observed.send([message("a@example.com"), message("b@example.com")])
    assert [r.ok for r in results] == [True, False]
    assert (count("accepted"), count("transient")) == (1, 1)
    calls = REGISTRY.get_sample_value(
        "verdicts_provider_call_seconds_count", {"transport": "memory-observed"}
    )
    assert calls == 1


# --- acceptance: real workers, Redis, PostgreSQL, SES emulator, the web app over HTTP ---

SUBSCRIBERS = 300
SEND_RATE_PER_S = 60


BIN = Path(sys.executable).parent


def newsletter(env: dict[str, str], folder: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "newsletter"), *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"newsletter {' '.join(args)}: {done.stdout}{done.stderr}"


@contextmanager
def dramatiq_worker(env: dict[str, str], folder: Path) -> Iterator[None]:
    """`dramatiq worker.actors` as the Procfile runs it (one process here), stopped after."""
    with open(folder / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [str(BIN / "dramatiq"), "worker.actors", "--processes", "1", "--threads", "4"],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, with the exporter it forks
        )
        try:
            yield
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=5)


@pytest.mark.postgres
def test_metrics_scraped_during_a_send_show_the_sent_counter_rising_to_the_subscriber_count(
    tmp_path: Path, pg_schema: str, redis_db: str, ses: str
) -> None:
    prom_port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DATABASE_URL": postgres_schema_url(pg_schema),
        "REDIS_URL": redis_db,
        "NEWSLETTER_TRANSPORT": "ses",
        "SES_REGION": "us-east-1",
        "SES_ENDPOINT_URL": ses,
        "SES_MAX_SEND_RATE": str(SEND_RATE_PER_S),  # 300 messages take about five seconds
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "SECRET_KEY": "metrics-test-secret",
        "PUBLIC_BASE_URL": "https://verdicts.example.org",
        "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(prom_port),
        "dramatiq_prom_db": str(tmp_path / "prometheus"),
    }
    readers = tmp_path / "readers.csv"
    readers.write_text(
        "email,name\n" + "".join(f"r{i}@example.com,R {i}\n" for i in range(SUBSCRIBERS))
    )
    newsletter(env, tmp_path, "db", "upgrade")
    newsletter(env, tmp_path, "comparisons", "import", str(EXAMPLE))
    newsletter(env, tmp_path, "subscribers", "import", str(readers))
    token = "scrape-token"
    site = LiveSite(
        tmp_path, DATABASE_URL=env["DATABASE_URL"], REDIS_URL=redis_db, METRICS_TOKEN=token
    )
    with site, dramatiq_worker(env, tmp_path):
        newsletter(env, tmp_path, "send-weekly", "--week", "2026-W47")
        scrapes = scrape_until_sent(f"{site.base}/metrics", token, deadline_s=90)
        worker_figures = exporter_once_batches_counted(prom_port, deadline_s=30)
    sent = [value(found, "verdicts_messages_sent_total") or 0 for found in scrapes]
    assert sent == sorted(sent), f"the sent counter went down: {sent}"
    assert any(0 < count < SUBSCRIBERS for count in sent), f"no scrape saw the send midway: {sent}"
    assert sent[-1] == SUBSCRIBERS
    assert any((value(f, "verdicts_send_rate_messages_per_second") or 0) > 0 for f in scrapes)
    assert any(queued(f) > 0 for f in scrapes), "the queue never showed the batches"
    assert value(scrapes[-1], "verdicts_deliveries", state="sent") == SUBSCRIBERS
    assert value(scrapes[-1], "verdicts_metrics_source_up", source="redis") == 1
    # The worker's own exporter: dramatiq's figures and the provider results, over all its
    # processes (300 subscribers are 6 batches of 50).
    batches = value(
        worker_figures, "dramatiq_messages_total", queue_name="verdicts", actor_name="send_batch"
    )
    assert batches is not None and batches >= SUBSCRIBERS / 50
    accepted = value(
        worker_figures, "verdicts_provider_results_total", transport="ses", result="accepted"
    )
    assert accepted == SUBSCRIBERS


def queued(found: Samples) -> float:
    return sum(
        value(found, "verdicts_queue_messages", queue="verdicts", state=state) or 0
        for state in ("ready", "unacked")
    )


def scrape_until_sent(url: str, token: str, *, deadline_s: float) -> list[Samples]:
    """Scrape as Prometheus would (only faster) until every subscriber's message is sent."""
    scrapes: list[Samples] = []
    deadline = time.monotonic() + deadline_s
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        while time.monotonic() < deadline:
            answer = client.get(url)
            assert answer.status_code == 200, answer.text
            scrapes.append(samples(answer.text))
            if value(scrapes[-1], "verdicts_messages_sent_total") == SUBSCRIBERS:
                return scrapes
            time.sleep(0.1)
    raise AssertionError(f"not all sent within {deadline_s} s: {scrapes[-1:]}")


def exporter_once_batches_counted(port: int, *, deadline_s: float) -> Samples:
    """The worker host's exporter, once it counts every batch (a batch's ack follows its send)."""
    deadline = time.monotonic() + deadline_s
    found: Samples = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                found = samples(answer.read().decode())
        except OSError:
            found = {}  # the exporter process starts after the worker processes
        labels = {"queue_name": "verdicts", "actor_name": "send_batch"}
        if (value(found, "dramatiq_messages_total", **labels) or 0) >= SUBSCRIBERS / 50:
            return found
        time.sleep(0.2)
    raise AssertionError(f"the worker exporter never counted the batches: {found}")
