"""Transports: where a finished message goes (outbox files, memory; SES and SMTP to come)."""

from __future__ import annotations

from worker.config import Settings
from worker.errors import ConfigError
from worker.transports.base import Transport
from worker.transports.memory import MemoryTransport
from worker.transports.outbox import OutboxTransport


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_path)
    if settings.transport == "memory":
        return MemoryTransport()
    raise ConfigError(
        f"NEWSLETTER_TRANSPORT={settings.transport} is not available in this version; "
        "use outbox (the default)"
    )
