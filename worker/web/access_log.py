"""uvicorn's own loggers, brought into the app's logging, with secrets kept out of request lines.

A request line names the path, and ours carry signed tokens (`/c/<token>` is a reader's click,
`/unsubscribe/<token>` their way out) and query values an admin typed (a search for an address,
the notice after a test send). Whoever reads the logs gets neither.
"""

from __future__ import annotations

import logging
import math
import re

from worker import tracking

REDACTED = "…redacted"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# The routes with a signed token in the path (web.engagement, web.public, web.signup): all that
# follows is dropped, so even a token a mail client cut short is not shown.
TOKEN_ROUTES = ("/o/", "/c/", "/unsubscribe/", "/confirm/", "/resubscribe/")
# A signed token anywhere else, such as on a route added later: `payload.mac` (worker.tracking).
SIGNED = re.compile(rf"[\w-]+\.[\w-]{{{math.ceil(tracking.MAC_BYTES * 4 / 3)}}}(?![\w-])")


def redact(full_path: str) -> str:
    """`/c/<token>` → `/c/…redacted`; `/admin/subscribers?q=ada%40example.com&page=2` →
    `/admin/subscribers?q=…redacted&page=…redacted` (the names say what was asked)."""
    path, question, query = full_path.partition("?")
    for prefix in TOKEN_ROUTES:
        if path.startswith(prefix) and len(path) > len(prefix):
            path = prefix + REDACTED
            break
    path = SIGNED.sub(REDACTED, path)
    if not question:
        return path
    names = [pair.partition("=")[0] for pair in query.split("&") if pair]
    return f"{path}?{'&'.join(f'{name}={REDACTED}' for name in names)}"


class RedactedRequests(logging.Filter):
    """Rewrites each uvicorn access record in place, before any handler or formatter sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, path, version, status).
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, full_path, version, status = record.args
            path = redact(str(full_path))
            record.args = (client, method, path, version, status)
            record.__dict__.update(method=method, path=path, status=status)
        return True


def install() -> None:
    """Redact uvicorn's access log, and have its loggers print through ours (worker.logs).

    Called when the app is made and again when it starts serving: uvicorn sets up its loggers
    when its Config is made: after create_app under `--factory`, but before it when the app is
    handed over as an object (tests, an embedding program), which resets them.
    """
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactedRequests) for f in access.filters):
        access.addFilter(RedactedRequests())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if logger.handlers:  # uvicorn's own, with its own format: ours print instead
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        # LOG_LEVEL decides for them too. One turned off (`--no-access-log`: no handler and no
        # propagation) stays off.
        if logger.propagate:
            logger.setLevel(logging.NOTSET)
