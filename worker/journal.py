"""The log lines that say what happened to an edition or a delivery, written once it is committed.

Every transition function calls one of these right after its conditional UPDATE changed a row.
The line waits for the transaction's commit, so a rolled-back change is never reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlmodel import Session

from worker.logs import redact_emails
from worker.models import DeliveryState, EditionStatus

editions_log = logging.getLogger("worker.editions")
deliveries_log = logging.getLogger("worker.delivery")

_PENDING = "journal.pending"


def edition_changed(
    session: Session,
    edition_id: int,
    *,
    from_state: EditionStatus | None,
    to_state: EditionStatus,
    reason: str = "",
) -> None:
    """`from_state` None: the edition was just made, in `to_state`."""
    if from_state == to_state:  # a repeated start_send: nothing changed
        return
    move = f"created as {to_state}" if from_state is None else f"{from_state} -> {to_state}"
    fields = {
        "edition_id": edition_id,
        "from_state": from_state.value if from_state else None,
        "to_state": to_state.value,
        "reason": reason,
    }
    message = f"edition %d {move}" + (": %s" if reason else "")
    args = (edition_id, reason) if reason else (edition_id,)
    _after_commit(session, lambda: editions_log.info(message, *args, extra=fields))


def delivery_failed(
    session: Session,
    *,
    edition_id: int,
    delivery_id: int,
    to_state: DeliveryState,
    reason: str,
) -> None:
    """A delivery that will not go (failed) or may have gone (uncertain): someone should look.

    Provider reasons can quote the recipient (`550 <ada@example.com>: no such user`); the line
    names the delivery instead, and the full reason stays in the delivery's last_error.
    """
    reason = redact_emails(reason)
    fields = {
        "edition_id": edition_id,
        "delivery_id": delivery_id,
        "from_state": DeliveryState.SENDING.value,
        "to_state": to_state.value,
        "reason": reason,
    }
    _after_commit(
        session,
        lambda: deliveries_log.warning(
            "delivery %d of edition %d %s: %s",
            delivery_id,
            edition_id,
            to_state,
            reason,
            extra=fields,
        ),
    )


def _after_commit(session: Session, write: Callable[[], None]) -> None:
    pending: list[Callable[[], None]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _write_pending)
        event.listen(session, "after_rollback", _drop_pending)
    pending.append(write)


def _write_pending(session: Session) -> None:
    # A savepoint's release also counts as a commit here; the lines wait for the real one.
    if session.in_nested_transaction():
        return
    pending: list[Callable[[], None]] = session.info[_PENDING]
    written, pending[:] = list(pending), []
    for write in written:
        write()


def _drop_pending(session: Session) -> None:
    if not session.in_nested_transaction():
        session.info[_PENDING].clear()
