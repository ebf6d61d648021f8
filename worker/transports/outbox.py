"""The default transport: every message becomes an RFC 5322 .eml file in OUTBOX_DIR."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from worker.transports import mime
from worker.transports.base import FailureKind, OutgoingMessage, SendResult


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, message: OutgoingMessage) -> Path:
        return self.directory / f"{message.tag}.eml"

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = f"outbox folder {self.directory} cannot be created: {error.strerror}"
            return [SendResult(failure=FailureKind.ACCOUNT, reason=reason) for _ in messages]
        return [self._write(message) for message in messages]

    def _write(self, message: OutgoingMessage) -> SendResult:
        target = self.path_for(message)
        partial = target.with_suffix(".eml.partial")
        try:
            data = mime.build(message)
        except (ValueError, UnicodeError) as error:
            return SendResult(
                failure=FailureKind.PERMANENT, reason=f"cannot build message: {error}"
            )
        try:
            partial.write_bytes(data)
            os.replace(partial, target)  # a reader never sees half a message
        except OSError as error:
            return SendResult(failure=FailureKind.TRANSIENT, reason=f"{target}: {error.strerror}")
        return SendResult(provider_id=str(target))
