"""A transport that keeps messages in a list: for tests of the sending logic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.transports.base import FailureKind, OutgoingMessage, SendResult


@dataclass
class MemoryTransport:
    name: str = "memory"
    sent: list[OutgoingMessage] = field(default_factory=list)
    # Scripted failures by recipient address, used once each (then the address sends normally).
    failures: dict[str, list[SendResult]] = field(default_factory=dict)

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results = []
        for message in messages:
            scripted = self.failures.get(message.to_address)
            if scripted:
                results.append(scripted.pop(0))
                continue
            self.sent.append(message)
            results.append(SendResult(provider_id=f"memory-{len(self.sent)}"))
        return results

    def fail_next(self, address: str, kind: FailureKind, reason: str = "scripted") -> None:
        self.failures.setdefault(address, []).append(SendResult(failure=kind, reason=reason))
