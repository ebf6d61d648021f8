"""Each process logs as LOG_FORMAT says: the `newsletter` command, the scheduler, a dramatiq
worker process and the web app under a real uvicorn, whose access log shows no token."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLE
from tests.live_site import LiveSite
from worker import tracking
from worker.cli import app
from worker.config import Settings
from worker.models import utcnow
from worker.web import access_log

READER = "ada@example.com"
BIN = Path(sys.executable).parent


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (fails on any line that is not one)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the web app's access log ------------------------------------------------------------------


def test_the_access_log_keeps_tokens_and_query_values_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app served by a real uvicorn; every route with a token in its path is asked for."""
    with LiveSite(tmp_path, LOG_FORMAT="json") as site:
        key = site.settings.signing_key()
        opened = tracking.open_token(key, delivery_id=1)
        clicked = tracking.click_token(key, delivery_id=1, url="https://example.com/a")
        leave = tracking.unsubscribe_token(key, subscriber_id=1, delivery_id=1)
        confirm = tracking.confirm_token(key, subscriber_id=1, issued_at=utcnow())
        asked = [
            ("GET", f"/o/{opened}.gif", "/o/…redacted"),
            ("GET", f"/c/{clicked}", "/c/…redacted"),
            ("GET", f"/unsubscribe/{leave}", "/unsubscribe/…redacted"),
            ("POST", f"/unsubscribe/{leave}", "/unsubscribe/…redacted"),
            ("GET", f"/confirm/{confirm}", "/confirm/…redacted"),
            ("POST", f"/resubscribe/{leave}", "/resubscribe/…redacted"),
            (
                "GET",
                "/admin/subscribers?q=ada%40example.com&page=2",
                "/admin/subscribers?q=…redacted&page=…redacted",
            ),
            ("GET", "/archive", "/archive"),
        ]
        with httpx.Client(base_url=site.base, follow_redirects=False, timeout=10) as client:
            for method, path, _ in asked:
                client.request(method, path)
    lines = [
        line for line in json_lines(capsys.readouterr().err) if line["logger"] == "uvicorn.access"
    ]
    assert [line["path"] for line in lines] == [shown for _, _, shown in asked]
    for line, (method, _, shown) in zip(lines, asked, strict=True):
        assert f'"{method} {shown} HTTP/1.1"' in line["message"]
    text = json.dumps(lines)
    for secret in (opened, clicked, leave, confirm, "ada%40example.com", "ada@example.com"):
        assert secret not in text


def test_every_route_with_a_token_in_its_path_is_redacted_whole(settings: Settings) -> None:
    from worker.web import create_app

    with warnings.catch_warnings():  # the schema is only read here for its paths
        warnings.simplefilter("ignore")
        paths = create_app(settings).openapi()["paths"]
    with_token = [path for path in paths if "{token}" in path]
    assert with_token
    for path in with_token:
        assert access_log.redact(path.replace("{token}", "abc")).endswith(access_log.REDACTED)


def test_a_signed_token_on_any_other_path_is_redacted_too() -> None:
    token = tracking.unsubscribe_token(b"key", subscriber_id=1, delivery_id=2)
    assert access_log.redact(f"/later/{token}/page") == "/later/…redacted/page"
    assert access_log.redact("/archive/claude-4-api-vs-code-llama-4") == (
        "/archive/claude-4-api-vs-code-llama-4"
    )


# --- each process honours LOG_FORMAT -----------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "VAR_DIR": str(tmp_path / "var"),
        "POSTAL_ADDRESS": "1 Test Street, Testville",
        **extra,
    }


def _send_the_sample_week(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`newsletter send-weekly` for one reader and the sample comparison, as a user would."""
    newsletter = str(BIN / "newsletter")
    for args in (["comparisons", "import", str(EXAMPLE)], ["subscribers", "add", READER]):
        subprocess.run([newsletter, *args], env=env, check=True, capture_output=True)
    return subprocess.run(
        [newsletter, "send-weekly", "--week", "2026-W47"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_newsletter_command_writes_json_lines_to_stderr(tmp_path: Path) -> None:
    done = _send_the_sample_week(_env(tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO"))
    assert done.returncode == 0, done.stderr
    assert "sent" in done.stdout  # the command's own summary is still there, on stdout
    lines = json_lines(done.stderr)  # and stderr holds nothing but JSON lines
    moves = [
        (ln["from_state"], ln["to_state"]) for ln in lines if ln["logger"] == "worker.editions"
    ]
    assert moves == [(None, "approved"), ("approved", "sending"), ("sending", "sent")]
    assert READER not in done.stderr


def test_the_newsletter_command_prints_only_warnings_unless_log_level_asks(
    tmp_path: Path,
) -> None:
    done = _send_the_sample_week(_env(tmp_path))
    assert done.returncode == 0 and done.stderr == ""


def test_the_scheduler_writes_json_lines_to_stderr(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "schedules", "--once"],
        env=_env(tmp_path, LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert any(ln["logger"] == "schedules" and ln["message"].endswith(" leads") for ln in lines)


def _lines_of(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _first(lines: queue.Queue[str], wanted: Callable[[str], bool], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if wanted(line):
            return line
    raise AssertionError("no such line within the time")


def test_a_dramatiq_worker_process_writes_json_lines(tmp_path: Path) -> None:
    """The real `dramatiq worker.actors`: its worker process logs in our format once booted."""
    worker = subprocess.Popen(
        [str(BIN / "dramatiq"), "worker.actors", "--processes", "1", "--threads", "1"],
        env=_env(tmp_path, LOG_FORMAT="json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        ready = _first(_lines_of(worker.stderr), lambda line: "ready for action" in line, 60)
        line = json.loads(ready)
        assert line["level"] == "INFO" and line["logger"].startswith("dramatiq.WorkerProcess")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


# --- a bad setting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("LOG_FORMAT", "xml", "LOG_FORMAT: Value error, must be human or json, got 'xml'"),
        (
            "LOG_LEVEL",
            "loud",
            "LOG_LEVEL: Value error, must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got 'loud'",
        ),
    ],
)
def test_a_bad_log_setting_is_one_clear_line_and_no_traceback(
    tmp_path: Path, name: str, value: str, said: str
) -> None:
    result = CliRunner().invoke(app, ["comparisons", "list"], env={name: value})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {said}"]
    scheduler = subprocess.run(
        [sys.executable, "-m", "schedules", "--once"],
        env=_env(tmp_path, **{name: value}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert scheduler.returncode == 1
    assert scheduler.stderr.splitlines() == [f"scheduler: {said}"]


def test_either_spelling_of_a_log_setting_is_fine() -> None:
    loaded = Settings(_env_file=None, LOG_FORMAT=" JSON ", LOG_LEVEL="debug")
    assert (loaded.log_format, loaded.log_level) == ("json", "DEBUG")
