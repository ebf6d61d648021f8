"""POST /hooks/ses: SES events that Amazon SNS delivers, verified before anything is acted on.

The verifier and the SubscribeURL visitor come from `app.state.sns_verifier` and
`app.state.sns_visit` when something (a test) put them there; otherwise the defaults are built
from the settings on first use.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from starlette.datastructures import State

from worker import ses_events, sns
from worker.db import session_scope
from worker.sns import MessageType, SnsMalformed, SnsRejected, SnsUnreachable

log = logging.getLogger(__name__)

router = APIRouter()
MAX_BODY_BYTES = 512 * 1024  # an SNS message is at most 256 KiB plus its envelope


async def _body(request: Request) -> bytes:
    """The raw body (SNS posts JSON as text/plain), refused once it passes MAX_BODY_BYTES."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(status_code=413, detail="body too large")
    return bytes(body)


def _verifier(state: State) -> sns.Verifier:
    verifier = getattr(state, "sns_verifier", None)
    if not isinstance(verifier, sns.Verifier):
        # Built once and kept, so its certificate cache lives as long as the app.
        verifier = sns.Verifier(topics=state.settings.sns_topics)
        state.sns_verifier = verifier
    return verifier


def _visitor(state: State) -> sns.Visitor:
    visit = getattr(state, "sns_visit", None)
    return visit if callable(visit) else sns.visit_https


def _answer(text: str, status: int = 200) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


@router.post("/hooks/ses")
def ses_hook(request: Request, body: Annotated[bytes, Depends(_body)]) -> PlainTextResponse:
    state = request.app.state
    try:
        message = _verifier(state).check(body)
        if message.type == MessageType.SUBSCRIPTION_CONFIRMATION:
            sns.confirm_subscription(message, visit=_visitor(state))
            return _answer("subscription confirmed")
        if message.type == MessageType.UNSUBSCRIBE_CONFIRMATION:
            log.info("SNS unsubscribed us from %s", message.topic_arn)
            return _answer("noted")
        with session_scope(state.engine) as session:
            applied = ses_events.apply_notification(
                session, message.message, notification_id=message.message_id
            )
    except SnsMalformed as error:
        return _answer(f"bad request: {error.reason}", 400)
    except SnsRejected as error:
        log.warning("SNS message refused: %s", error.reason)
        return _answer(f"refused: {error.reason}", 403)
    except SnsUnreachable as error:
        # 5xx makes SNS retry later; a 4xx would drop the notification for good.
        log.warning("SNS message deferred: %s", error.reason)
        return _answer("AWS could not be reached; try again later", 503)
    if applied.ignored:
        # A verified message from our own topic that we cannot use (a console test publish, an
        # event type we do not record): 200, so SNS neither retries nor counts a failure.
        log.info("SNS message %s ignored: %s", message.message_id, applied.ignored)
        return _answer(f"ignored: {applied.ignored}")
    log.info(
        "SES %s via SNS %s: %d recorded, %d repeated, %d suppressed, %d for unknown addresses",
        applied.event_type,
        message.message_id,
        applied.recorded,
        applied.repeated,
        applied.suppressed,
        applied.unknown,
    )
    return _answer(f"recorded {applied.recorded}, repeated {applied.repeated}")
