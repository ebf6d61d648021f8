"""Figures for the queue on real services (PostgreSQL, Redis, the SES emulator).

(a) 100,000 subscribers → delivery rows created and every send_batch message enqueued on Redis.
(b) the send rate two `dramatiq` worker processes hold against SES_MAX_SEND_RATE, measured where
    SES sees it (a pass-through proxy timestamps each SendEmail call): the achieved share of the
    limit, and the busiest one-second window.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import create_engine, insert, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", "100000"))
RATE_PER_S = float(os.environ.get("BENCH_RATE", "100"))  # the emulator tops out near 160/s
RATE_MESSAGES = int(os.environ.get("BENCH_RATE_MESSAGES", "2000"))
EXAMPLE = REPO / "examples" / "claude-4-api-vs-code-llama-4.json"


def schema_url(schema: str) -> str:
    return f"{POSTGRES}?options=-csearch_path%3D{schema}"


def fresh_schema() -> str:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return schema


def drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def seed(settings_env: dict[str, str], subscribers: int) -> None:
    """Schema, the sample comparison, and `subscribers` active readers (bulk inserted)."""
    os.environ.update(settings_env)
    from worker import comparisons, db
    from worker.config import get_settings
    from worker.models import Subscriber, SubscriberStatus, utcnow

    get_settings.cache_clear()
    settings = get_settings()
    engine = db.make_engine(settings)
    db.upgrade(engine)
    with db.session_scope(engine) as session:
        comparisons.store(session, comparisons.parse_document(EXAMPLE.read_bytes(), source="x"))
    now = utcnow()
    rows = [
        {
            "email": f"r{i}@example.com",
            "name": "",
            "status": SubscriberStatus.ACTIVE,
            "source": "bench",
            "created_at": now,
        }
        for i in range(subscribers)
    ]
    with engine.begin() as connection:
        for start in range(0, len(rows), 10_000):
            connection.execute(insert(Subscriber), rows[start : start + 10_000])
    engine.dispose()


def bench_enqueue() -> None:
    schema = fresh_schema()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    env = {"DATABASE_URL": schema_url(schema), "REDIS_URL": REDIS_URL, "SECRET_KEY": "bench"}
    try:
        seed(env, SUBSCRIBERS)
        from worker import actors, db, sending, weekly
        from worker.config import get_settings

        settings = get_settings()
        engine = db.make_engine(settings)
        edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
        assert edition is not None and edition.id is not None
        started = time.perf_counter()
        batches = sending.start_send(engine, edition.id)
        inserted_s = time.perf_counter() - started
        for batch in batches:
            actors.send_batch.send(edition.id, batch)
        total_s = time.perf_counter() - started
        queued = client.llen("verdicts:verdicts")
        print(
            f"(a) {SUBSCRIBERS:,} subscribers → delivery rows in {inserted_s:.2f} s, "
            f"+ {len(batches):,} send_batch messages on Redis ({queued:,} queued): "
            f"{total_s:.2f} s in all (target < 10 s)"
        )
        engine.dispose()
    finally:
        client.flushdb()
        drop_schema(schema)


def rate_between(times: list[float], first: int, last: int) -> float:
    span_s = times[last] - times[first]
    return (last - first) / span_s if span_s > 0 else 0.0


def bench_rate() -> None:
    from tests.ses_emulator import FaultProxy, Faults, running_emulator

    schema = fresh_schema()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    folder = Path(tempfile.mkdtemp())
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with running_emulator() as ses, FaultProxy(ses, Faults()) as proxy:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "DATABASE_URL": schema_url(schema),
                "REDIS_URL": REDIS_URL,
                "SECRET_KEY": "bench",
                "NEWSLETTER_TRANSPORT": "ses",
                "SES_REGION": "us-east-1",
                "SES_ENDPOINT_URL": proxy.url,
                "SES_MAX_SEND_RATE": str(RATE_PER_S),
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
            }
            seed(env, RATE_MESSAGES)
            bin_dir = Path(sys.executable).parent
            for _ in range(2):
                workers.append(
                    subprocess.Popen(
                        [
                            str(bin_dir / "dramatiq"),
                            "worker.actors",
                            "--processes",
                            "1",
                            "--threads",
                            "4",
                        ],
                        env=env,
                        cwd=folder,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            sent = subprocess.run(
                [str(bin_dir / "newsletter"), "send-weekly", "--week", "2026-W47", "--wait"],
                env=env,
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if sent.returncode != 0:
                raise SystemExit(f"send failed: {sent.stderr}")
            times = sorted(proxy.faults.call_times)
        overall = rate_between(times, 0, len(times) - 1)
        # Steady state: the middle 90% of the calls, without worker start-up and the last batch.
        steady = rate_between(times, len(times) // 20, len(times) - 1 - len(times) // 20)
        busiest = max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))
        print(
            f"(b) {len(times):,} messages by 2 worker processes against SES_MAX_SEND_RATE="
            f"{RATE_PER_S:g}/s: held {steady:.1f}/s = {steady / RATE_PER_S:.2f} of the limit "
            f"(target ≥ 0.9; {overall / RATE_PER_S:.2f} first call to last); "
            f"busiest one-second window {busiest} (limit {RATE_PER_S:g})"
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        client.flushdb()
        drop_schema(schema)


def bench_worker_throughput() -> None:
    """(c) What one worker process sends per second when SES answers at once (the proxy accepts
    each SendEmail itself), for sizing: the whole path of a message (claim, personalise, build
    the MIME, SigV4-signed HTTPS-style call, bookkeeping) on PostgreSQL and Redis."""
    from faults.deployment import Deployment, services
    from tests.ses_emulator import Faults

    folder = Path(tempfile.mkdtemp())
    with services(folder) as shared:
        for processes, threads in ((1, 4), (1, 8), (2, 4)):
            faults = Faults(sink=True)
            round_folder = folder / f"{processes}x{threads}"
            round_folder.mkdir()
            with Deployment(
                round_folder, shared, faults=faults, subscribers=RATE_MESSAGES
            ) as deploy:
                for _ in range(processes):
                    deploy.start_worker(threads=threads)
                deploy.newsletter("send-weekly", "--week", "2026-W47", "--wait")
                times = sorted(faults.call_times)
            steady = rate_between(times, len(times) // 20, len(times) - 1 - len(times) // 20)
            print(
                f"(c) {processes} worker process(es) × {threads} threads, SES answering at once: "
                f"{steady:.0f} messages/s ({len(times):,} messages)"
            )


if __name__ == "__main__":
    part = sys.argv[1] if len(sys.argv) > 1 else "all"
    if part in ("all", "enqueue"):
        bench_enqueue()
    if part in ("all", "rate"):
        bench_rate()
    if part in ("all", "throughput"):
        bench_worker_throughput()
