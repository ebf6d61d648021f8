"""The web app served for real by uvicorn in a thread, on the embedded defaults, for tests that
need a real HTTP client (a browser, curl)."""

from __future__ import annotations

import socket
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine

from tests.helpers import parse
from worker import db, subscribers
from worker.config import Settings
from worker.models import SubscriberStatus
from worker.web import create_app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LiveSite:
    """The web app served by uvicorn in a thread, on the embedded SQLite and outbox defaults."""

    def __init__(self, tmp_path: Path, **overrides: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        values: dict[str, Any] = {
            "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "browser-test-key",
            "PUBLIC_BASE_URL": self.base,
            "POSTAL_ADDRESS": "1 Test Street, Testville",
            "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
            **overrides,
        }
        self.settings = Settings(_env_file=None, **values)
        self.app = create_app(self.settings)
        self.engine: Engine = self.app.state.engine
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveSite:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web app did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def outbox(self) -> list[EmailMessage]:
        files = sorted(self.settings.outbox_path.glob("*.eml"), key=lambda p: p.stat().st_mtime)
        return [parse(path.read_bytes()) for path in files]

    def mail_to(self, email: str, subject_part: str) -> EmailMessage:
        found = [
            m for m in self.outbox() if email in str(m["To"]) and subject_part in str(m["Subject"])
        ]
        assert found, f"no mail to {email} about {subject_part!r} in the outbox"
        return found[-1]

    def status_of(self, email: str) -> SubscriberStatus | None:
        with db.session_scope(self.engine) as session:
            found = subscribers.find(session, email)
            return found.status if found else None
