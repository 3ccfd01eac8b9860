"""Replica processes killed with SIGKILL mid-send, live sends that must not be rescued, and a
PostgreSQL restart under load: counted at the SMTP sink and in the database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cancelnotify.db import run_migrations
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from tests.conftest import encode, signed_headers
from tests.delivery.conftest import (
    Cluster,
    RestartableSink,
    enqueue,
    scalar,
    status_counts,
    wait_until,
)
from tests.pgserver import PgServer

pytestmark = pytest.mark.slow
URL = "/v1/webhooks/order-cancelled"
LEASE, POLL = 1.5, 0.2

# phase -> (sink stage to hold at, copies the sink may hold at the end)
PHASES = {
    "a_after_claim_before_connect": ("connect", 1),
    "b_after_mail_from": ("mail", 1),
    "c_after_final_dot_before_250": ("data", 2),
    "d_after_250_before_commit": ("data", 2),
}


async def sent(db: AsyncEngine, count: int = 1) -> bool:
    return (await status_counts(db)).get("sent", 0) >= count


class TestKillMidSend:
    @pytest.mark.parametrize("phase", list(PHASES))
    async def test_sigkill_at_each_phase_is_rescued_by_another_replica(
        self,
        phase: str,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., None],
    ) -> None:
        stage, max_copies = PHASES[phase]
        held = sink.handler.hold(stage)
        victim = await cluster.start("victim", lease_seconds=LEASE, poll_interval_seconds=POLL)
        (nid,) = await enqueue(make_settings(), 1)
        await asyncio.wait_for(held.reached.wait(), 15)
        owner = await scalar(db, "SELECT locked_by FROM notifications")
        assert owner.startswith("victim:")
        await cluster.start("rescuer", lease_seconds=LEASE, poll_interval_seconds=POLL)

        lock = None
        if phase.startswith("d_"):
            # Hold the row so the victim's outcome write blocks: 250 received, no commit yet.
            lock = await db.connect()
            await lock.begin()
            await lock.execute(text("SELECT id FROM notifications FOR UPDATE"))
            held.release.set()

            async def blocked() -> bool:
                n = await scalar(
                    db,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO delivery_attempts%'",
                )
                return bool(n)

            await wait_until(blocked, 10, "the victim's outcome write to block")

        victim.kill()
        await victim.wait()
        t_kill = time.monotonic()
        held.release.set()
        if lock is not None:
            # The outcome write is one autocommit statement: already inside the server, it would
            # commit on its own once the lock goes (the victim's 250 recorded, no resend). The
            # harder branch is the write that never lands: end the dead client's backend first,
            # as PostgreSQL does once it notices the client is gone.
            await scalar(
                db,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO delivery_attempts%'",
            )
            await lock.rollback()
            await lock.close()

        await wait_until(lambda: sent(db), LEASE + POLL + 10, "the rescue")
        recovery = time.monotonic() - t_kill
        await asyncio.sleep(0.5)
        ids = sink.ids()
        copies = sum(ids.values())
        assert await status_counts(db) == {"sent": 1}
        assert len(ids) == 1  # every copy carries the one Message-ID
        assert str(nid) in next(iter(ids))
        assert 1 <= copies <= max_copies
        winner = await scalar(db, "SELECT worker FROM delivery_attempts WHERE outcome = 'sent'")
        assert winner.startswith("rescuer:")
        # RELIABILITY.md §3.8: recovery within lease + poll interval + 5 s.
        assert recovery <= LEASE + POLL + 5
        figure(
            phase=phase,
            sent=1,
            lost=0,
            duplicates=copies - 1,
            message_ids=len(ids),
            recovery_s=round(recovery, 2),
        )

    async def test_sigkill_after_a_hand_over_is_rescued_by_another_replica(
        self, cluster: Cluster, sink: RestartableSink, db: AsyncEngine
    ) -> None:
        # The row was never `queued`: the webhook's own statement leased it to the victim.
        held = sink.handler.hold("mail")
        victim = await cluster.start("victim", lease_seconds=LEASE, poll_interval_seconds=POLL)
        await asyncio.sleep(3 * POLL)  # its first claim found the queue empty: it is idle
        body = encode(sample_event(order_id="hand-over"))
        async with httpx.AsyncClient(base_url=victim.url) as client:
            r = await client.post(URL, content=body, headers=signed_headers(body))
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "sending"
        await asyncio.wait_for(held.reached.wait(), 15)
        owner = await scalar(db, "SELECT locked_by FROM notifications")
        assert owner.startswith("victim:")
        await cluster.start("rescuer", lease_seconds=LEASE, poll_interval_seconds=POLL)

        victim.kill()
        await victim.wait()
        t_kill = time.monotonic()
        held.release.set()

        await wait_until(lambda: sent(db), LEASE + POLL + 10, "the rescue")
        recovery = time.monotonic() - t_kill
        await asyncio.sleep(0.5)
        assert await status_counts(db) == {"sent": 1}
        assert len(sink.messages) == 1  # nothing reached DATA before the kill
        assert await scalar(db, "SELECT attempts FROM notifications") == 2
        winner = await scalar(db, "SELECT worker FROM delivery_attempts WHERE outcome = 'sent'")
        assert winner.startswith("rescuer:")
        assert recovery <= LEASE + POLL + 5


class TestRescueTiming:
    async def test_a_live_slow_send_keeps_its_lease_and_is_not_rescued(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., None],
    ) -> None:
        sink.handler.delay_data(3.0, times=1)  # 3x the lease; legal under RFC 5321's 10 min
        await cluster.start_many(["r1", "r2"], lease_seconds=1.0, poll_interval_seconds=0.1)
        await enqueue(make_settings(), 1)
        await wait_until(lambda: sent(db), 15, "the slow send")
        await asyncio.sleep(0.5)
        claims = await scalar(db, "SELECT attempts FROM notifications")
        assert claims == 1  # no second claim
        assert len(sink.messages) == 1
        assert await scalar(db, "SELECT count(*) FROM delivery_attempts") == 1
        figure(second_claims=claims - 1, sink_copies=len(sink.messages), lease_s=1.0, hold_s=3.0)

    async def test_a_restart_with_the_same_worker_id_does_not_strand_rows(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., None],
    ) -> None:
        held = sink.handler.hold("mail")
        opts = {"worker_id": "pod-0", "lease_seconds": LEASE, "poll_interval_seconds": POLL}
        first = await cluster.start("pod-0", **opts)
        await enqueue(make_settings(), 3)
        await asyncio.wait_for(held.reached.wait(), 15)
        first.kill()
        await first.wait()
        held.release.set()
        assert (await status_counts(db)).get("sending", 0) >= 1
        await cluster.start("pod-0", **opts)  # k8s pod-name reuse
        t0 = time.monotonic()
        await wait_until(lambda: sent(db, 3), LEASE + 2 * POLL + 5, "the orphaned rows")
        recovery = time.monotonic() - t0
        await asyncio.sleep(0.3)
        assert await status_counts(db) == {"sent": 3}
        assert len(sink.messages) == 3
        assert len(sink.ids()) == 3
        figure(stuck_in_sending=0, sent=3, duplicates=0, lost=0, recovery_s=round(recovery, 2))


class TestDatabaseRestart:
    async def test_postgres_restart_under_load_answers_503_and_loses_nothing(
        self,
        sink: RestartableSink,
        tmp_path: Path,
        figure: Callable[..., None],
    ) -> None:
        server = PgServer()  # its own cluster: stopping it must not touch the other tests
        await asyncio.to_thread(server.start)
        url = server.create_database("restart")
        await asyncio.to_thread(run_migrations, url)
        cluster = Cluster(url, sink, tmp_path)
        engine = create_async_engine(url)
        accepted: dict[str, float] = {}  # notification id -> when the 2xx came
        codes: list[tuple[float, int]] = []
        outage: list[float] = []
        try:
            replicas = await cluster.start_many(["r1", "r2"])
            stop = asyncio.Event()

            async def producer(k: int) -> None:
                async with httpx.AsyncClient(timeout=10) as client:
                    i = 0
                    while not stop.is_set():
                        body = encode(sample_event(order_id=f"p{k}-{i}"))
                        headers = signed_headers(body, webhook_id=f"msg_{uuid.uuid4().hex}")
                        while True:  # a producer retries until it gets a 2xx
                            try:
                                r = await client.post(
                                    replicas[i % 2].url + URL, content=body, headers=headers
                                )
                                code = r.status_code
                            except httpx.HTTPError:
                                code = 0
                            codes.append((time.monotonic(), code))
                            if 200 <= code < 300:
                                accepted[r.json()["notification_id"]] = time.monotonic()
                                break
                            await asyncio.sleep(0.1)
                        i += 1
                        await asyncio.sleep(0.05)

            producers = [asyncio.create_task(producer(k)) for k in range(2)]
            await asyncio.sleep(1.5)
            outage.append(time.monotonic())
            await asyncio.to_thread(server.stop, "fast")
            await asyncio.sleep(2.0)
            outage.append(time.monotonic())  # the database is down between these two
            await asyncio.to_thread(server.start)
            outage.append(time.monotonic())
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*producers)

            async def all_sent() -> bool:
                async with engine.connect() as conn:
                    n = (
                        await conn.execute(
                            text("SELECT count(*) FROM notifications WHERE status = 'sent'")
                        )
                    ).scalar_one()
                return int(n) >= len(accepted)

            await wait_until(all_sent, 30, "every accepted webhook to be sent")
            await asyncio.sleep(0.5)
            async with engine.connect() as conn:
                stored = {
                    str(r[0])
                    for r in (await conn.execute(text("SELECT id FROM notifications"))).all()
                }
        finally:
            await engine.dispose()
            await cluster.close()
            await asyncio.to_thread(server.destroy)

        down_from, down_to, up_at = outage
        during = [c for t, c in codes if down_from + 0.3 < t < down_to]
        after_up = [t for t, c in codes if t > up_at and 200 <= c < 300]
        delivered = sink.ids()
        lost = [n for n in accepted if not any(n in mid for mid in delivered)]
        copies = sum(delivered.values())
        assert accepted, "the producer got no webhook in"
        assert stored >= set(accepted)  # never a 2xx without a commit
        assert during, "no request landed in the outage"
        assert all(c in (503, 0) for c in during), sorted(set(during))
        assert not lost
        assert all(n <= 2 for n in delivered.values())  # at most one ambiguous copy each
        first_success = (min(after_up) - up_at) if after_up else None
        assert first_success is not None
        assert first_success <= 10
        figure(
            accepted=len(accepted),
            answered_503_during_outage=sum(1 for c in during if c == 503),
            other_during_outage=sum(1 for c in during if c != 503),
            lost=len(lost),
            duplicates=copies - len(delivered),
            first_2xx_after_db_back_s=round(first_success, 2),
        )
