"""One deployment on this machine for a fault scenario: its own PostgreSQL schema, a Redis server
of its own (so it can be restarted), the SES emulator behind a fault proxy, and the Procfile's
processes (`dramatiq worker.actors`, `python -m schedules`) started as real subprocesses.

The emulator's store is the ground truth of what left; the proxy remembers each send SES
accepted, which is what SES would later report in delivery events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import redis
from sqlalchemy import Engine, create_engine, text

from tests.ses_emulator import FaultProxy, Faults, clear, free_port, running_emulator, stored

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("FAULTS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
EXAMPLE = REPO / "examples" / "claude-4-api-vs-code-llama-4.json"
WEEK = "2026-W47"
SECRET = "fault-suite-secret-key-0123456789abcdef"
LEASE_S = 3
THREADS = 4  # per worker process


def wait_for(
    condition: Callable[[], bool], what: str, *, timeout_s: float = 90, poll_s: float = 0.2
) -> None:
    """Poll `condition` until it holds; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def _sqlalchemy(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


class RedisServer:
    """A redis-server of the suite's own, on a free port, keeping nothing on disk (as a Redis
    without persistence does: a restart loses every queued message)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def flush(self) -> None:
        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


@dataclass
class Services:
    emulator_url: str
    redis: RedisServer


@contextmanager
def services(folder: Path, *, emulator_url: str | None = None) -> Iterator[Services]:
    """The SES emulator (started here unless given) and a Redis server, shared by the rounds."""
    with ExitStack() as stack:
        if emulator_url is None:
            emulator_url = stack.enter_context(running_emulator())
        server = RedisServer(folder)
        server.start()
        stack.callback(server.kill)
        yield Services(emulator_url, server)


class Deployment:
    """The processes of one deployment sharing PostgreSQL, Redis and SES, for one round."""

    def __init__(self, folder: Path, services: Services, *, faults: Faults, subscribers: int):
        self.folder = folder
        self.services = services
        self.faults = faults
        self.subscribers = subscribers
        self.schema = f"faults_{uuid.uuid4().hex[:10]}"
        # The processes' connections carry this name: the PostgreSQL scenario ends exactly those.
        self.application_name = f"verdicts-{self.schema}"
        self.database_url = (
            f"{POSTGRES}?options=-csearch_path%3D{self.schema}"
            f"&application_name={self.application_name}"
        )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env: dict[str, str] = {}
        self._stack = ExitStack()
        self._admin = create_engine(_sqlalchemy(POSTGRES))
        self.db: Engine = create_engine(
            _sqlalchemy(f"{POSTGRES}?options=-csearch_path%3D{self.schema}"), pool_pre_ping=True
        )

    def __enter__(self) -> Deployment:
        clear(self.services.emulator_url)
        self.services.redis.flush()
        with self._admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        proxy = self._stack.enter_context(FaultProxy(self.services.emulator_url, self.faults))
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.folder),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.services.redis.url,
            "NEWSLETTER_TRANSPORT": "ses",
            "SES_REGION": "us-east-1",
            "SES_ENDPOINT_URL": proxy.url,
            "SES_MAX_SEND_RATE": "1000",  # the emulator, near 160/s, is the limit
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "SECRET_KEY": SECRET,
            "PUBLIC_BASE_URL": "https://verdicts.example.org",
            "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
            "POSTAL_ADDRESS": "1 Example Street, Springfield",
            "SEND_LEASE_S": str(LEASE_S),
            "dramatiq_prom_db": str(self.folder / "prometheus"),
        }
        csv = self.folder / "readers.csv"
        csv.write_text(
            "email,name\n" + "".join(f"r{i}@example.com,R {i}\n" for i in range(self.subscribers))
        )
        for args in (
            ("db", "upgrade"),
            ("comparisons", "import", str(EXAMPLE)),
            ("subscribers", "import", str(csv)),
        ):
            self.newsletter(*args)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._stack.close()
        self.db.dispose()
        with self._admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        self._admin.dispose()

    # The processes

    def newsletter(self, *args: str, timeout_s: float = 300) -> str:
        done = subprocess.run(
            [str(BIN / "newsletter"), *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RuntimeError(f"newsletter {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def start_worker(self, *, threads: int = THREADS) -> subprocess.Popen[bytes]:
        # Each worker's metrics exporter on a port of its own, as on separate hosts.
        env = {**self.env, "dramatiq_prom_port": str(free_port())}
        command = [str(BIN / "dramatiq"), "worker.actors", "--processes", "1"]
        command += ["--threads", str(threads)]
        return self._start("worker", command, env=env)

    def start_scheduler(self, *args: str) -> subprocess.Popen[bytes]:
        return self._start("scheduler", [sys.executable, "-m", "schedules", *args])

    def _start(
        self, name: str, command: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            command,
            env=env or self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes its children too
        )
        log.close()
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    # What the database and SES say

    def scalar(self, sql: str, **params: object) -> int:
        with self.db.connect() as connection:
            return int(connection.execute(text(sql), params).scalar() or 0)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.db.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]

    def states(self) -> Counter[str]:
        with self.db.connect() as connection:
            rows = connection.execute(text("SELECT state, count(*) FROM delivery GROUP BY state"))
            return Counter({str(state): int(count) for state, count in rows})

    def edition_statuses(self) -> list[str]:
        with self.db.connect() as connection:
            rows = connection.execute(text("SELECT status FROM edition ORDER BY id"))
            return [str(status) for (status,) in rows]

    def received(self) -> Counter[str]:
        """How many messages SES holds for each address."""
        return Counter(
            parseaddr(email["destination"]["to"][0])[1]
            for email in stored(self.services.emulator_url)
        )

    def wait_until_accepted(self, count: int, *, timeout_s: float = 120) -> None:
        """Until SES accepted `count` sends (counted by the proxy: reading the emulator's whole
        store this often would slow it down)."""
        wait_for(
            lambda: len(self.faults.accepted) >= count,
            f"SES to accept {count} messages",
            timeout_s=timeout_s,
            poll_s=0.05,
        )

    def wait_until_sent(self, *, editions: int = 1, timeout_s: float = 300) -> None:
        """Until `editions` editions are sent with nothing pending or in flight."""
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = self.edition_statuses()
            states = self.states()
            if (
                statuses.count("sent") >= editions
                and not states["pending"]
                and not states["sending"]
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not sent after {timeout_s:.0f} s: editions {statuses}, deliveries "
                    f"{dict(states)}; logs in {self.folder}"
                )
            time.sleep(0.2)

    def terminate_backends(self) -> int:
        """End every PostgreSQL connection the deployment's processes hold."""
        with self._admin.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": self.application_name},
            ).scalar()
        return int(ended or 0)
