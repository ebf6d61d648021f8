"""Figures for the open pixel and tracked links under load: wrk against uvicorn on PostgreSQL.

For each endpoint: requests/s, p50 and p99 latency, errors, and events stored against requests
completed, each checked against the target (≥ 1,000 req/s, p99 < 50 ms, no errors, no event lost).
The figures are printed, not asserted; the exit status is non-zero only if something broke.
BENCH_PLAIN_UVICORN=1 serves with `uvicorn --workers 2` instead of `python -m worker.web`;
BENCH_DURATION_S, BENCH_CONNECTIONS and BENCH_READERS change the load.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, update
from sqlmodel import col, select

from worker import db, sending, tracking, weekly
from worker.config import get_settings
from worker.models import Delivery, DeliveryState, Edition, EditionStatus, Event, EventKind, utcnow

REPO = Path(__file__).resolve().parent.parent
# `python benchmarks/tracking_bench.py` puts only benchmarks/ on the path; the schema helpers
# are shared with the queue benchmark.
sys.path.insert(0, str(REPO))
from benchmarks import queue_bench  # noqa: E402

READERS = int(os.environ.get("BENCH_READERS", "1000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "20"))
WARM_UP_S = 2
SECRET_KEY = "bench-tracking"
TARGET_PER_S = 1000.0
TARGET_P99_MS = 50.0
SERVER_START_S = 60.0
# A current desktop Chrome: the endpoints must take it for a reader, not a scanner.
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
TARGET_URL = json.loads((REPO / "examples" / "claude-4-api-vs-code-llama-4.json").read_text())[
    "url"
]
RESULT_MARK = "TRACKING-BENCH "
# The web app is served as in production with several processes: `python -m worker.web
# --workers 2`, uvicorn with a shared socket made as TCP. BENCH_PLAIN_UVICORN=1 runs
# `uvicorn --workers 2` instead, whose socket leaves TCP_NODELAY off (see worker/web/__main__.py):
# every pixel then waits ~40 ms for the client's delayed ACK.
PLAIN_UVICORN = os.environ.get("BENCH_PLAIN_UVICORN") == "1"
DELAYED_ACK_MS = 20.0  # a keep-alive answer slower than this on an idle server waited for one

# Each wrk thread walks the token list from its own starting point, and reports at the end how
# many requests it wrote, so requests cut off by the end of the run can be told apart.
LUA = """\
local paths = {
%(paths)s
}
wrk.headers["User-Agent"] = %(agent)s
local threads = {}

function setup(thread)
  thread:set("cursor", #threads * math.floor(#paths / 2))
  thread:set("sent", 0)
  table.insert(threads, thread)
end

function request()
  cursor = cursor %% #paths + 1
  sent = sent + 1
  return wrk.format("GET", paths[cursor])
end

function done(summary, latency, requests)
  local sent_total = 0
  for _, thread in ipairs(threads) do
    sent_total = sent_total + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "sent": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, '
    .. '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d}\\n',
    summary.requests, sent_total, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class WrkRun:
    completed: int  # wrk counts a request once its whole response has arrived
    sent: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    bad_status: int  # responses other than 2xx or 3xx

    @property
    def per_s(self) -> float:
        return self.completed / self.duration_s

    @property
    def errors(self) -> int:
        return self.socket_errors + self.bad_status


@dataclass(frozen=True)
class Endpoint:
    name: str
    kind: EventKind
    paths: list[str]


def seed_sent_edition(env: dict[str, str]) -> list[int]:
    """READERS subscribers and one edition sent to each of them an hour ago; the delivery ids."""
    queue_bench.seed(env, READERS)
    settings = get_settings()
    engine = db.make_engine(settings)
    edition = weekly.prepare_week(engine, settings, week="2026-W47").edition
    assert edition is not None and edition.id is not None
    ids = [delivery_id for batch in sending.start_send(engine, edition.id) for delivery_id in batch]
    # An hour back, so no open counts as a gateway's fetch "within seconds of sending".
    sent_at = utcnow() - timedelta(hours=1)
    with db.session_scope(engine) as session:
        session.execute(update(Delivery).values(state=DeliveryState.SENT, sent_at=sent_at))
        session.execute(
            update(Edition)
            .where(col(Edition.id) == edition.id)
            .values(status=EditionStatus.SENT, started_at=sent_at, finished_at=sent_at)
        )
    engine.dispose()
    return ids


def lua_script(paths: list[str]) -> str:
    # Tokens are URL-safe base64 and dots, nothing a Lua string literal needs escaped.
    listed = ",\n".join(f'  "{path}"' for path in paths)
    return LUA % {"paths": listed, "agent": json.dumps(BROWSER), "mark": RESULT_MARK}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(env: dict[str, str], port: int, folder: Path) -> subprocess.Popen[bytes]:
    common = ["--workers", "2", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if PLAIN_UVICORN:
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        command = [uvicorn, "worker.web:create_app", "--factory", *common]
    else:
        command = [sys.executable, "-m", "worker.web", *common]
    command += ["--log-level", "warning"]
    with (folder / "server.log").open("wb") as log:
        return subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=log)


def keep_alive_wait_ms(port: int) -> float:
    """Median time for /healthz (headers and body written apart) on a reused connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    times_s = []
    try:
        for _ in range(6):
            started = time.perf_counter()
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            times_s.append(time.perf_counter() - started)
    finally:
        connection.close()
    return statistics.median(times_s[1:]) * 1000  # the first request has no ACK to wait for


def wait_until_up(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"uvicorn exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(
        f"uvicorn did not answer /healthz within {SERVER_START_S:g} s:\n{log.read_text()}"
    )


def run_wrk(script: Path, base_url: str, duration_s: int) -> WrkRun:
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency", "-s"]
    done = subprocess.run(
        [*command, str(script), base_url], capture_output=True, text=True, timeout=duration_s + 60
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = json.loads(lines[-1].removeprefix(RESULT_MARK))
    return WrkRun(
        completed=int(figures["requests"]),
        sent=int(figures["sent"]),
        duration_s=int(figures["duration_us"]) / 1e6,
        p50_ms=int(figures["p50_us"]) / 1000,
        p99_ms=int(figures["p99_us"]) / 1000,
        socket_errors=sum(int(figures[k]) for k in ("connect", "read", "write", "timeout")),
        bad_status=int(figures["status"]),
    )


def events_of(engine: Engine, kind: EventKind) -> int:
    with db.session_scope(engine) as session:
        return session.exec(select(func.count()).where(col(Event.kind) == kind)).one()


def settled_events(engine: Engine, kind: EventKind) -> int:
    """The count once the server has finished the requests still in hand when wrk stopped."""
    count = events_of(engine, kind)
    for _ in range(50):
        time.sleep(0.2)
        again = events_of(engine, kind)
        if again == count:
            return count
        count = again
    return count


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench(endpoint: Endpoint, base_url: str, engine: Engine, folder: Path) -> None:
    script = folder / f"{endpoint.kind.value}.lua"
    script.write_text(lua_script(endpoint.paths))
    run_wrk(script, base_url, WARM_UP_S)  # connections, pools and caches warm; not counted
    before = settled_events(engine, endpoint.kind)
    log = folder / "server.log"
    failed_before = log.read_text().count(f"could not record a {endpoint.kind.value} ")
    run = run_wrk(script, base_url, DURATION_S)
    stored = settled_events(engine, endpoint.kind) - before
    # The handlers answer even when the insert fails, and log it: count those as lost too.
    failed = log.read_text().count(f"could not record a {endpoint.kind.value} ") - failed_before
    if run.completed == 0:
        raise SystemExit(f"{endpoint.name}: wrk completed no request")
    # wrk counts a request once its response is in; the ones it had sent when the clock ran out
    # (`cut_off`, at most one per connection) may still have been stored after it stopped.
    cut_off = run.sent - run.completed
    lost = max(run.completed - stored, failed)
    print(f"{endpoint.name}")
    print(
        f"  {run.per_s:8,.0f} requests/s   ({run.completed:,} completed in {run.duration_s:.1f} s)"
    )
    print(f"  latency p50 {run.p50_ms:6.1f} ms   p99 {run.p99_ms:6.1f} ms")
    print(f"  errors {run.errors}   (socket {run.socket_errors}, non-2xx/3xx {run.bad_status})")
    print(
        f"  events stored {stored:,} for {run.completed:,} completed requests: lost {lost:,}"
        f" (+{max(stored - run.completed, 0)} stored of the {cut_off} cut off by the end of the"
        f" run; {failed} inserts failed in the server log)"
    )
    print(f"  {verdict(run.per_s >= TARGET_PER_S)}  ≥ {TARGET_PER_S:,.0f} requests/s")
    print(f"  {verdict(run.p99_ms < TARGET_P99_MS)}  p99 < {TARGET_P99_MS:g} ms")
    print(f"  {verdict(run.errors == 0)}  0 errors")
    print(f"  {verdict(lost == 0 and stored <= run.sent)}  0 events lost")


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make bench-deps` (Debian package wrk)")
    schema = queue_bench.fresh_schema()
    folder = Path(tempfile.mkdtemp(prefix="tracking-bench-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        env = {
            "DATABASE_URL": queue_bench.schema_url(schema),
            "SECRET_KEY": SECRET_KEY,
            "PUBLIC_BASE_URL": "http://127.0.0.1",
            "NEWSLETTER_TRANSPORT": "memory",
            "VAR_DIR": str(folder / "var"),
        }
        ids = seed_sent_edition(env)
        key = SECRET_KEY.encode()
        endpoints = [
            Endpoint(
                "open pixel  GET /o/{token}.gif",
                EventKind.OPEN,
                [f"/o/{tracking.open_token(key, delivery_id=i)}.gif" for i in ids],
            ),
            Endpoint(
                "tracked link  GET /c/{token} (302, not followed)",
                EventKind.CLICK,
                [f"/c/{tracking.click_token(key, delivery_id=i, url=TARGET_URL)}" for i in ids],
            ),
        ]
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server({**env, "PATH": os.environ.get("PATH", "")}, port, folder)
        wait_until_up(server, base_url, folder / "server.log")
        launcher = "uvicorn --workers 2" if PLAIN_UVICORN else "python -m worker.web --workers 2"
        print(
            f"tracking endpoints: {launcher} on PostgreSQL, "
            f"{len(ids):,} deliveries, wrk {CONNECTIONS} connections × {DURATION_S} s each, "
            f"{os.cpu_count()} CPU cores"
        )
        wait_ms = keep_alive_wait_ms(port)
        if wait_ms > DELAYED_ACK_MS:
            print(
                f"note: a small keep-alive response takes {wait_ms:.0f} ms on the idle server: "
                "TCP_NODELAY is off, so each pixel waits for a delayed ACK"
            )
        else:
            print(f"a small keep-alive response takes {wait_ms:.1f} ms on the idle server")
        engine = db.make_engine(get_settings())
        try:
            for endpoint in endpoints:
                bench(endpoint, base_url, engine, folder)
        finally:
            engine.dispose()
        if server.poll() is not None:
            raise SystemExit(f"uvicorn died during the run:\n{(folder / 'server.log').read_text()}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        queue_bench.drop_schema(schema)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
