"""The queue's actors: each takes IDs, calls one function of worker.sending, and enqueues what
comes next. A message that runs twice or late does no harm: every step is a conditional update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec

import dramatiq

from worker import runtime, sending, weekly
from worker.broker import broker

QUEUE = "verdicts"
P = ParamSpec("P")


def _actor(fn: Callable[P, None]) -> dramatiq.Actor[P, None]:
    # A fresh decorator each time: one decorator object reused would name every actor alike.
    # An actor that raises (a database blip) is retried a few times; every step is repeatable.
    # A batch under a low send rate can take long: allow an hour (the default is ten minutes);
    # if the limit still strikes, send_batch hands back what it did not send.
    return dramatiq.actor(
        queue_name=QUEUE,
        broker=broker,
        max_retries=5,
        min_backoff=1_000,
        max_backoff=60_000,
        time_limit=3_600_000,
    )(fn)


@_actor
def prepare_edition(schedule_id: int, period_key: str) -> None:
    """The week's edition for a schedule; sent at once unless it waits for approval."""
    now = runtime.current()
    edition_id = weekly.prepare_period(now.engine, now.settings, schedule_id, period_key)
    if edition_id is not None:
        start_send.send(edition_id)


@_actor
def start_send(edition_id: int) -> None:
    now = runtime.current()
    for batch in sending.start_send(now.engine, edition_id):
        send_batch.send(edition_id, batch)
    if not sending.finish_if_done(now.engine, edition_id) and now.watch:
        chain = now.watch.take_over(edition_id)
        if chain is not None:  # None: a chain already watches (a repeated or resumed start)
            reconcile.send_with_options(args=(edition_id, chain), delay=_lease_ms())


@_actor
def send_batch(edition_id: int, delivery_ids: list[int]) -> None:
    now = runtime.current()
    outcome = sending.send_batch(
        now.engine,
        edition_id,
        delivery_ids,
        transport=now.transport,
        settings=now.settings,
        limiter=now.limiter,
    )
    if outcome.retry:
        send_batch.send_with_options(
            args=(edition_id, outcome.retry), delay=int(outcome.retry_after_s * 1000)
        )
    else:
        sending.finish_if_done(now.engine, edition_id)


@_actor
def reconcile(edition_id: int, chain: str = "") -> None:
    """The watchdog of a send spread over worker processes, every lease while it lasts.

    Deliveries stuck `sending` past their lease (their worker died) become `uncertain`. Pending
    deliveries that nobody claimed for a whole lease belong to messages lost with a dead worker
    or with a Redis restart: they are handed out again (a duplicate message claims nothing).
    One chain of these messages watches an edition (worker.watchdog); another one ends here.
    """
    now = runtime.current()
    if now.watch is not None and chain and not now.watch.keep(edition_id, chain):
        return
    lease_s = now.settings.send_lease_s
    sending.reconcile(now.engine, edition_id, lease_s=lease_s)
    if sending.stalled(now.engine, edition_id, lease_s=lease_s):
        for batch in sending.start_send(now.engine, edition_id):
            send_batch.send(edition_id, batch)
    if sending.is_sending(now.engine, edition_id):
        reconcile.send_with_options(args=(edition_id, chain), delay=_lease_ms())
    elif now.watch is not None and chain:
        now.watch.release(edition_id, chain)


def _lease_ms() -> int:
    return (runtime.current().settings.send_lease_s + 1) * 1000
