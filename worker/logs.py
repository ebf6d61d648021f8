"""Logging for every process, from Settings: readable lines or JSON lines (LOG_FORMAT) on stderr.

`configure(settings)` is the one call; the CLI, the web app, the dramatiq worker processes and the
scheduler each make it once they know their settings. Structured fields go through `extra=`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from worker.config import LogLevel, Settings

# Their INFO and DEBUG lines carry whole requests: URLs with signed tokens (httpx visiting an SNS
# SubscribeURL), SES calls with recipients and message bodies (botocore). They stay at WARNING
# whatever LOG_LEVEL says.
CHATTY = (
    "boto3",
    "botocore",
    "s3transfer",
    "urllib3",
    "httpx",
    "httpcore",
    "multipart",
    "python_multipart",
)
# alembic names its dialect at every schema check, that is at each command and process start;
# `newsletter db upgrade` says itself what it upgraded.
NOISY = ("alembic",)

# Plain and percent-encoded (%40, as in a query string). A dot in the domain: every real address
# has one, and `user@host` without one is more often something else (a message id, a git URL).
EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
REDACTED_EMAIL = "[address redacted]"

# What a LogRecord holds whatever the call: anything else on a record came in through `extra=`.
# uvicorn's `color_message` is the same message with terminal colours, not a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def configure(
    settings: Settings, *, default_level: LogLevel = "INFO", quiet: Sequence[str] = ()
) -> None:
    """Send every logger's records at LOG_LEVEL (else `default_level`) or above to stderr, one
    line each; the loggers named in `quiet` (and CHATTY, NOISY) only from WARNING.

    Safe to call again (a test, a second create_app): the handler it installed before, and the one
    `logging.basicConfig` makes (dramatiq's, in each worker process), are replaced rather than
    doubled. Other handlers (a test's capture, a file someone added) are left alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StderrHandler) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else HumanFormatter())
    root.addHandler(handler)
    level = logging.getLevelNamesMapping()[settings.log_level or default_level]
    root.setLevel(level)
    for name in (*CHATTY, *NOISY, *quiet):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


class StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes: dramatiq points it at a pipe in its
    worker processes, Rich's progress bar at itself (so lines print above the bar), pytest at a
    capture. A StreamHandler would keep writing to the stream it was made with."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def utc_iso(created: float) -> str:
    """`2026-11-23T09:00:00.123Z`: UTC, whatever the machine's zone, to the millisecond."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redact_emails(text: str) -> str:
    return EMAIL.sub(REDACTED_EMAIL, text)


def _routine(record: logging.LogRecord) -> bool:
    """Lines at INFO and below go to wherever logs are shipped and kept: never an address there.
    A warning or an error may need one to be acted on; the sources keep those few out too."""
    return record.levelno <= logging.INFO


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a call passed through `extra=`."""
    return {
        name: value
        for name, value in record.__dict__.items()
        if name not in _STANDARD and not name.startswith("_")
    }


class HumanFormatter(logging.Formatter):
    """`2026-11-23T09:00:00.123Z INFO worker.editions: edition 3 sending -> sent`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return redact_emails(text) if _routine(record) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the record's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in fields_of(record).items():
            line.setdefault(name, value)  # a field never hides one of the four above
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        if _routine(record):
            line = {
                name: redact_emails(value) if isinstance(value, str) else value
                for name, value in line.items()
            }
        return json.dumps(line, ensure_ascii=False, default=str)
