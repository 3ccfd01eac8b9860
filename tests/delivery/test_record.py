"""Send outcomes written together (group commit): each lands on its own row, fenced on its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cancelnotify.clock import utcnow
from cancelnotify.db import create_engine, create_sessionmaker
from cancelnotify.dispatcher import Recorder
from cancelnotify.models import DeliveryAttempt, Notification
from cancelnotify.repository import Attempt, Claim
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from cancelnotify.states import Status
from cancelnotify.store import Store, open_store
from tests.conftest import encode, running_client, signed_headers
from tests.delivery.conftest import RestartableSink, enqueue, scalar, wait_until

URL = "/v1/webhooks/order-cancelled"
WORKER = "test-worker:abc123"


@pytest.fixture
async def store(make_settings: Callable[..., Settings]) -> AsyncIterator[Store]:
    settings = make_settings()
    engine = create_engine(settings)
    opened = await open_store(settings, engine, create_sessionmaker(engine))
    yield opened
    await opened.close()
    await engine.dispose()


async def claim(store: Store, make_settings: Callable[..., Settings], count: int) -> list[Claim]:
    await enqueue(make_settings(), count)
    claims = await store.claim(worker=WORKER, now=utcnow(), lease=30, limit=count, exclude=[])
    assert len(claims) == count
    return claims


def sent(subject: str) -> Attempt:
    return Attempt(
        started_at=utcnow(),
        duration_ms=12,
        outcome="sent",
        smtp_code=250,
        smtp_text="250 2.0.0 queued",
        status=Status.sent,
        next_attempt_at=None,
        failure_reason=None,
        subject=subject,
        body_text=f"body of {subject}",
    )


def retrying(due: datetime) -> Attempt:
    return replace(
        sent("unused"),
        outcome="transient",
        smtp_code=451,
        smtp_text="451 4.3.0 try later",
        status=Status.retrying,
        next_attempt_at=due,
        subject=None,
        body_text=None,
    )


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"], indirect=True)
async def test_outcomes_written_together_each_land_on_their_own_row(
    store: Store, make_settings: Callable[..., Settings], db: AsyncEngine
) -> None:
    first, second, rescued = await claim(store, make_settings, 3)
    due = utcnow() + timedelta(minutes=3)
    # Another replica rescued the third row meanwhile: its outcome must not overwrite it.
    async with db.begin() as conn:
        await conn.execute(
            update(Notification)
            .where(Notification.id == rescued.id)
            .values(locked_by="rescuer", attempts=2)
        )
    owned = await store.record(
        [(first, sent("one")), (second, retrying(due)), (rescued, sent("three"))],
        worker=WORKER,
        now=utcnow(),
    )
    assert owned == {first.id, second.id}
    n = Notification
    async with db.connect() as conn:
        found = {
            r[0]: (*r[1:-1], r[-1] is not None)
            for r in await conn.execute(
                select(n.id, n.status, n.subject, n.body_text, n.last_error, n.locked_by, n.sent_at)
            )
        }
        next_at = (
            await conn.execute(select(n.next_attempt_at).where(n.id == second.id))
        ).scalar_one()
        a = DeliveryAttempt
        attempts = list(await conn.execute(select(a.outcome, a.smtp_code, a.worker)))
    assert found[first.id] == ("sent", "one", "body of one", None, None, True)
    assert found[second.id] == ("retrying", None, None, "451 4.3.0 try later", None, False)
    assert found[rescued.id] == ("sending", None, None, None, "rescuer", False)
    assert abs(next_at - due) < timedelta(milliseconds=1)
    # What happened on the wire is kept for all three, the rescued one too.
    assert sorted(attempts) == [
        ("sent", 250, WORKER),
        ("sent", 250, WORKER),
        ("transient", 451, WORKER),
    ]


async def test_one_bad_outcome_does_not_keep_the_others_from_landing(
    store: Store, make_settings: Callable[..., Settings], db: AsyncEngine
) -> None:
    first, second = await claim(store, make_settings, 2)
    ghost = replace(first, id=uuid.uuid4())  # no such notification: its attempt row is refused
    recorder = Recorder(store, WORKER, utcnow)
    results = await asyncio.gather(
        recorder.record(first, sent("one")),
        recorder.record(ghost, sent("ghost")),
        recorder.record(second, sent("two")),
        return_exceptions=True,
    )
    assert results[0] is True
    assert results[2] is True
    assert isinstance(results[1], asyncpg.ForeignKeyViolationError)
    # One statement for the three, refused as a whole; then one each.
    assert recorder.writes == 4
    assert await scalar(db, "SELECT count(*) FROM notifications WHERE status = 'sent'") == 2


async def test_outcomes_that_finish_during_a_slow_write_share_the_next_one(
    make_settings: Callable[..., Settings], sink: RestartableSink, db: AsyncEngine
) -> None:
    count = 20
    async with running_client(make_settings()) as client:
        recorder: Recorder = client._transport.app.state.dispatcher.recorder  # type: ignore[attr-defined]
        async with db.connect() as blocker:
            # Attempt rows cannot be written until the blocker lets go: the database is slow.
            await blocker.execute(text("LOCK TABLE delivery_attempts IN EXCLUSIVE MODE"))
            for i in range(count):
                body = encode(sample_event(order_id=f"group-{i}-{uuid.uuid4().hex[:6]}"))
                r = await client.post(URL, content=body, headers=signed_headers(body))
                assert r.status_code == 202, r.text

            async def all_on_the_wire() -> bool:
                return len(sink.handler.messages) == count

            await wait_until(all_on_the_wire, 15, "every email at the relay")
            assert await scalar(db, "SELECT count(*) FROM notifications WHERE status = 'sent'") == 0
            await blocker.rollback()

        async def all_recorded() -> bool:
            return (
                await scalar(db, "SELECT count(*) FROM notifications WHERE status = 'sent'")
                == count
            )

        await wait_until(all_recorded, 15, "every outcome recorded")
        # The first write waited on the lock; the nineteen that finished meanwhile went together.
        assert recorder.writes <= 2
    assert await scalar(db, "SELECT count(*) FROM delivery_attempts") == count
    assert len(sink.handler.messages) == count


async def test_a_write_cut_by_shutdown_wakes_every_send_waiting_on_it(
    store: Store, make_settings: Callable[..., Settings], db: AsyncEngine
) -> None:
    first, second = await claim(store, make_settings, 2)
    recorder = Recorder(store, WORKER, utcnow)
    async with db.connect() as blocker:
        await blocker.execute(text("LOCK TABLE delivery_attempts IN EXCLUSIVE MODE"))
        waiting = [
            asyncio.create_task(recorder.record(first, sent("one"))),
            asyncio.create_task(recorder.record(second, sent("two"))),
        ]
        await asyncio.sleep(0.2)  # the write is stuck on the lock
        assert recorder._writer is not None
        recorder._writer.cancel()
        done, pending = await asyncio.wait(waiting, timeout=5)
        await blocker.rollback()
    assert not pending  # nobody is left waiting for a write that will not come
    assert all(task.cancelled() for task in done)


async def test_sends_do_not_queue_for_the_webhooks_database_connections(
    make_settings: Callable[..., Settings], sink: RestartableSink, db: AsyncEngine
) -> None:
    # Under a storm every webhook connection is busy; the sender has connections of its own, or
    # its claims and records would wait behind each webhook for one (measured: 220-250 emails/s
    # delivered while 64 connections post webhooks, 350-390 with its own).
    async with running_client(make_settings(database_pool_size=1)) as client:
        store = client._transport.app.state.store  # type: ignore[attr-defined]
        async with db.connect() as blocker:
            await blocker.execute(text("LOCK TABLE delivery_attempts IN EXCLUSIVE MODE"))
            body = encode(sample_event(order_id=f"own-{uuid.uuid4().hex[:6]}"))
            r = await client.post(URL, content=body, headers=signed_headers(body))
            assert r.status_code == 202, r.text

            async def at_the_relay() -> bool:
                return len(sink.handler.messages) == 1

            await wait_until(at_the_relay, 15, "the email at the relay")
            # Now the webhooks' only connection is taken, and the outcome is still to be written.
            async with store.pool.acquire():
                await blocker.rollback()

                async def recorded() -> bool:
                    sent = "SELECT count(*) FROM notifications WHERE status = 'sent'"
                    return await scalar(db, sent) == 1

                await wait_until(recorded, 10, "the outcome written while webhooks hold theirs")
