"""Scrape cost of /metrics on PostgreSQL: 100,000 deliveries and 300,000 events.

Seeds a private schema as the stats benchmark does, then times one database reading of the
collector (worker.metrics.read_figures, median of BENCH_RUNS runs) and the whole GET /metrics,
and prints each query's plan, so a sequential scan that creeps in shows. Figures are printed,
not asserted. BENCH_DELIVERIES and BENCH_EVENTS change the size.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks import queue_bench, stats_bench  # noqa: E402
from worker import db, metrics  # noqa: E402
from worker.config import Settings  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
TARGET_S = 0.1


def reading_s(engine: Engine, now: datetime) -> float:
    started = time.perf_counter()
    with engine.connect() as connection:
        metrics.read_figures(connection, now=now)
    return time.perf_counter() - started


def page_s(settings: Settings, engine: Engine) -> list[float]:
    """Seconds for the whole GET /metrics, RUNS times."""
    from fastapi.testclient import TestClient

    from worker.web import create_app

    app = create_app(settings)
    app.state.engine = engine
    times = []
    with TestClient(app) as client:
        for _ in range(RUNS):
            started = time.perf_counter()
            answer = client.get("/metrics")
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise SystemExit(f"/metrics answered {answer.status_code}")
    return times


def plans(engine: Engine, now: datetime) -> list[str]:
    """EXPLAIN ANALYZE of every statement one reading runs, replayed with its own parameters."""
    captured: list[tuple[str, Any]] = []

    def capture(
        _conn: object, _cursor: object, statement: str, parameters: Any, *_: object
    ) -> None:
        captured.append((statement, parameters))

    shown = []
    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        metrics.read_figures(connection, now=now)
        event.remove(connection, "before_cursor_execute", capture)
        for statement, parameters in captured:
            rows = connection.exec_driver_sql(
                f"EXPLAIN (ANALYZE, COSTS OFF) {statement}", parameters
            )
            shown.append(" ".join(statement.split()) + "\n    " + "\n    ".join(r[0] for r in rows))
    return shown


def main() -> None:
    schema = queue_bench.fresh_schema()
    settings = Settings(_env_file=None, DATABASE_URL=queue_bench.schema_url(schema))
    engine = db.make_engine(settings)
    try:
        stats_bench.seed(engine)
        # The edition as if it were sending now, its last minute's share of sent_at as mid-send:
        # the rate query's worst case.
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE delivery SET sent_at = :now - make_interval(secs => id % 1200) "
                    "WHERE sent_at IS NOT NULL"
                ),
                {"now": now},
            )
            connection.execute(text("UPDATE edition SET status = 'sending', finished_at = NULL"))
            # Delivery, bounce and complaint events come from SES (through SNS), with its id.
            connection.execute(
                text(
                    "UPDATE event SET provider_event_id = 'bench-' || id "
                    "WHERE kind IN ('delivery', 'bounce', 'complaint')"
                )
            )
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(text("VACUUM ANALYZE"))
            deliveries = connection.execute(text("SELECT count(*) FROM delivery")).scalar_one()
            events = connection.execute(text("SELECT count(*) FROM event")).scalar_one()
        reading_s(engine, now)  # warm the pool and the caches
        runs = [reading_s(engine, now) for _ in range(RUNS)]
        median_s = statistics.median(runs)
        verdict = "met" if median_s < TARGET_S else "MISSED"
        print(
            f"/metrics database reading for {deliveries:,} deliveries / {events:,} events: "
            f"{median_s * 1000:.1f} ms median of {RUNS} (min {min(runs) * 1000:.1f}, "
            f"max {max(runs) * 1000:.1f}; target < {TARGET_S * 1000:g} ms: {verdict})"
        )
        pages = page_s(settings.model_copy(update={"secret_key": "bench"}), engine)
        print(f"  the whole GET /metrics: {statistics.median(pages) * 1000:.1f} ms median")
        for shown in plans(engine, now):
            print(shown)
        # Between sends the rate query finds no live edition and reads no delivery.
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE edition SET status = 'sent', finished_at = :at"),
                {"at": now - timedelta(hours=1)},
            )
        idle = statistics.median(reading_s(engine, now) for _ in range(RUNS))
        print(f"  between sends (no edition sending): {idle * 1000:.1f} ms median of {RUNS}")
    finally:
        engine.dispose()
        queue_bench.drop_schema(schema)


if __name__ == "__main__":
    main()
