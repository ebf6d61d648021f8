"""Run a send on the in-process broker (the embedded setup), or follow one that workers run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import Engine

from worker import delivery, sending
from worker.db import session_scope
from worker.models import DeliveryState, EditionStatus

ProgressFn = Callable[[dict[DeliveryState, int]], None]
POLL_S = 0.25
_ACTIVE = (EditionStatus.APPROVED, EditionStatus.SENDING)


def in_process() -> bool:
    from worker.broker import broker

    return isinstance(broker, StubBroker)


def counts(engine: Engine, edition_id: int) -> dict[DeliveryState, int]:
    with session_scope(engine) as session:
        return delivery.counts(session, edition_id)


def enqueue(edition_id: int) -> None:
    from worker.actors import start_send

    start_send.send(edition_id)


_IN_PROCESS = threading.Lock()


def send_in_process(
    engine: Engine, edition_id: int, *, lease_s: int, progress: ProgressFn | None
) -> None:
    """Run start_send and everything it enqueues on one worker thread until none is left.

    One at a time per process: the in-process broker is shared, and two senders draining it at
    once would each wait on the other's messages.
    """
    with _IN_PROCESS:
        _send_in_process(engine, edition_id, lease_s=lease_s, progress=progress)


def _send_in_process(
    engine: Engine, edition_id: int, *, lease_s: int, progress: ProgressFn | None
) -> None:
    from worker.actors import QUEUE
    from worker.broker import broker

    assert isinstance(broker, StubBroker)
    # Rows a dead sender left `sending` are settled once their lease has run out. Another live
    # process (a second CLI) renews its rows, so they are not taken from it.
    sending.reconcile(engine, edition_id, lease_s=lease_s)
    enqueue(edition_id)
    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    failure: list[BaseException] = []

    def join() -> None:
        try:
            broker.join(QUEUE, fail_fast=True)
        except BaseException as error:
            failure.append(error)

    joiner = threading.Thread(target=join, daemon=True)
    joiner.start()
    try:
        while joiner.is_alive():
            joiner.join(POLL_S)
            if progress:
                progress(counts(engine, edition_id))
    finally:
        worker.stop()
    if failure:
        raise failure[0]


def follow(engine: Engine, edition_id: int, *, progress: ProgressFn | None) -> None:
    """Wait while workers elsewhere send the edition, until it is sent, paused or cancelled."""
    while True:
        if progress:
            progress(counts(engine, edition_id))
        if sending.edition_status(engine, edition_id) not in _ACTIVE:
            return
        time.sleep(POLL_S)
