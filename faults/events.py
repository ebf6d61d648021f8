"""The SES events SES would publish (through SNS) about the messages it accepted."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.ses_emulator import Accepted


def delivery_event(accepted: Accepted) -> dict[str, object]:
    """The SES `Delivery` event for a message SES accepted (headers included, as configured)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "eventType": "Delivery",
        "mail": {
            "timestamp": now,
            "messageId": accepted.message_id,
            "destination": [accepted.recipient],
            "headers": [{"name": "X-Verdicts-Delivery", "value": accepted.delivery_header}],
        },
        "delivery": {"timestamp": now, "recipients": [accepted.recipient], "smtpResponse": "250"},
    }


def bounce_event(accepted: Accepted) -> dict[str, object]:
    event = delivery_event(accepted)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "eventType": "Bounce",
        "mail": event["mail"],
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "timestamp": now,
            "bouncedRecipients": [
                {"emailAddress": accepted.recipient, "diagnosticCode": "smtp; 550 5.1.1 unknown"}
            ],
        },
    }
