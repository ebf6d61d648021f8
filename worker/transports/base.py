"""The transport contract: send a batch of fully personalised messages, one result per message."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from worker.transports.mime import EncodedBodies


@dataclass(frozen=True)
class OutgoingMessage:
    from_address: str
    to_address: str
    to_name: str
    subject: str
    html: str
    text: str
    message_id: str  # "<local@domain>", stable per delivery so a resend is recognisable
    tag: str  # names the delivery for provider events and file names, e.g. "e3-d17"
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe and the like
    # The bodies already quoted-printable encoded (decoding to exactly `text` and `html`), when
    # the sender prepared them from a pre-encoded edition; otherwise a transport encodes them.
    encoded: EncodedBodies | None = None


class FailureKind(StrEnum):
    TRANSIENT = "transient"  # try again later
    PERMANENT = "permanent"  # this recipient/message will never go
    ACCOUNT = "account"  # nothing will go until an operator acts
    UNKNOWN = "unknown"  # the provider may have taken it (no answer): record uncertain


@dataclass(frozen=True)
class SendResult:
    provider_id: str | None = None
    failure: FailureKind | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


class Transport(Protocol):
    name: str

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]: ...
