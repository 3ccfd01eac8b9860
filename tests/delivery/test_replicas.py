"""Several replica processes on one PostgreSQL: dedupe, sharing the outbox, polling, shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from tests.conftest import encode, signed_headers
from tests.delivery.conftest import (
    Cluster,
    RestartableSink,
    enqueue,
    rows,
    scalar,
    status_counts,
    wait_until,
)

URL = "/v1/webhooks/order-cancelled"
# uvicorn shuts down gracefully, then re-raises the captured SIGTERM (exit status -15).
GRACEFUL = (0, -signal.SIGTERM)
pytestmark = pytest.mark.slow


async def settle(sink: RestartableSink, seconds: float = 0.5) -> None:
    """Give a would-be duplicate the time to arrive (several poll intervals)."""
    await asyncio.sleep(seconds)


class TestDuplicateStorm:
    async def test_100_concurrent_copies_across_3_replicas_make_one_email(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        replicas = await cluster.start_many(["r1", "r2", "r3"])
        body = encode(sample_event())
        headers = signed_headers(body)
        latencies: list[float] = []

        async def post(client: httpx.AsyncClient, i: int) -> int:
            t0 = time.perf_counter()
            r = await client.post(replicas[i % 3].url + URL, content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            return r.status_code

        async with httpx.AsyncClient(timeout=30) as client:
            codes = await asyncio.gather(*(post(client, i) for i in range(100)))

        await sink.wait_for(1)
        await settle(sink)
        ok = sum(1 for c in codes if 200 <= c < 300)
        assert sorted(codes) == [200] * 99 + [202]
        assert await scalar(db, "SELECT count(*) FROM cancellations") == 1
        assert await scalar(db, "SELECT count(*) FROM notifications") == 1
        assert len(sink.messages) == 1
        latencies.sort()
        figure(
            rows=1,
            sink_messages=len(sink.messages),
            ok_2xx=f"{ok}/100",
            p99_ms=round(latencies[98] * 1000, 1),
            duplicates=0,
            lost=0,
        )


class TestTwoEventIds:
    async def test_two_event_ids_for_one_order_on_two_replicas_send_one_email(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        r1, r2 = await cluster.start_many(["r1", "r2"])
        a = encode(sample_event(order_id="77"))
        b = encode(sample_event(order_id="77"))
        async with httpx.AsyncClient(timeout=30) as client:
            ra, rb = await asyncio.gather(
                client.post(r1.url + URL, content=a, headers=signed_headers(a)),
                client.post(r2.url + URL, content=b, headers=signed_headers(b)),
            )
        assert sorted([ra.status_code, rb.status_code]) == [200, 202]
        assert ra.json()["notification_id"] == rb.json()["notification_id"]
        await sink.wait_for(1)
        await settle(sink)
        assert await scalar(db, "SELECT count(*) FROM cancellations") == 2
        assert await scalar(db, "SELECT count(*) FROM notifications") == 1
        assert len(sink.messages) == 1
        figure(rows=2, emails=len(sink.messages), duplicates=0, lost=0)


class TestReplicasShareTheOutbox:
    async def test_three_replicas_send_1000_queued_notifications_once_each(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., None],
    ) -> None:
        ids = await enqueue(make_settings(), 1000)
        t0 = time.monotonic()
        await cluster.start_many(["r1", "r2", "r3"], dispatcher_concurrency=8, smtp_pool_size=4)
        await sink.wait_for(1000, timeout=120)
        elapsed = time.monotonic() - t0
        await settle(sink)
        counted = sink.ids()
        per_worker = await rows(
            db,
            "SELECT split_part(worker, ':', 1), count(*) FROM delivery_attempts GROUP BY 1",
        )
        assert len(sink.messages) == 1000
        assert len(counted) == 1000
        assert max(counted.values()) == 1
        assert await status_counts(db) == {"sent": 1000}
        # Under CPU starvation a lease can run out before DATA; the owner then stands down
        # (no DATA) and a rescuer sends: extra claims, never extra copies.
        reclaimed = await scalar(db, "SELECT count(*) FROM notifications WHERE attempts > 1")
        assert len(ids) == 1000
        shares = {w: n for w, n in per_worker}
        assert len(shares) == 3, shares  # every replica took part
        figure(
            sink_count=len(sink.messages),
            distinct_message_ids=len(counted),
            duplicates=sum(n - 1 for n in counted.values()),
            lost=1000 - len(counted),
            seconds_incl_startup=round(elapsed, 1),
            per_replica=shares,
            reclaimed_rows=reclaimed,
        )


class TestLostWakeUp:
    async def test_rows_inserted_without_a_wake_up_are_picked_up_by_polling(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., None],
    ) -> None:
        poll = 0.2
        await cluster.start_many(["r1", "r2"], poll_interval_seconds=poll)
        await asyncio.sleep(0.5)  # the replicas are idle and waiting
        latencies: list[float] = []
        for i in range(10):
            before = len(sink.messages)
            t0 = time.monotonic()
            await enqueue(make_settings(), 1, prefix=f"w{i}-")

            async def arrived(before: int = before) -> bool:
                return len(sink.messages) > before

            await wait_until(arrived, timeout=10, what="the polled pickup")
            latencies.append(time.monotonic() - t0)
            await asyncio.sleep(0.05 * (i % 4))  # land at different points of the poll cycle
        await settle(sink)
        assert len(sink.ids()) == 10
        assert len(sink.messages) == 10
        # RELIABILITY.md §3.13: pickup within the poll interval + 1 s.
        assert max(latencies) <= poll + 1.0
        figure(
            rows=10,
            lost=0,
            duplicates=0,
            max_pickup_s=round(max(latencies), 3),
            poll_s=poll,
        )


class TestGracefulShutdown:
    async def test_sigterm_finishes_the_live_send_and_releases_claimed_rows(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., Any],
    ) -> None:
        held = sink.handler.hold("data")
        replica = await cluster.start(
            "r1", smtp_pool_size=1, dispatcher_concurrency=4, shutdown_grace_seconds=5
        )
        await enqueue(make_settings(), 4)
        await asyncio.wait_for(held.reached.wait(), 10)
        # One send is in DATA, three are claimed and waiting for the single connection.
        assert await status_counts(db) == {"sending": 4}
        replica.signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        held.release.set()
        assert await replica.wait() in GRACEFUL
        counts = await status_counts(db)
        assert counts == {"sent": 1, "queued": 3}
        released = await rows(
            db,
            "SELECT attempts, locked_by FROM notifications WHERE status = 'queued'",
        )
        assert all(a == 0 and by is None for a, by in released)
        assert await scalar(db, "SELECT count(*) FROM delivery_attempts") == 1
        assert len(sink.messages) == 1

        # The released rows go out from the next replica at once, not after a lease.
        t0 = time.monotonic()
        await cluster.start("r2")
        await sink.wait_for(4)
        recovery = time.monotonic() - t0
        await settle(sink)
        assert len(sink.messages) == 4
        assert len(sink.ids()) == 4
        figure(sent=4, duplicates=0, lost=0, released=3, restart_to_delivered_s=round(recovery, 2))

    async def test_sigterm_past_the_grace_cuts_the_send_and_records_it_ambiguous(
        self,
        cluster: Cluster,
        sink: RestartableSink,
        db: AsyncEngine,
        make_settings: Callable[..., Settings],
        figure: Callable[..., Any],
    ) -> None:
        held = sink.handler.hold("data")
        replica = await cluster.start("r1", shutdown_grace_seconds=0.5)
        (nid,) = await enqueue(make_settings(), 1)
        await asyncio.wait_for(held.reached.wait(), 10)
        replica.signal(signal.SIGTERM)
        assert await replica.wait() in GRACEFUL
        held.release.set()
        outcomes = await rows(db, "SELECT outcome FROM delivery_attempts")
        assert [o for (o,) in outcomes] == ["ambiguous"]
        assert await status_counts(db) == {"retrying": 1}
        await cluster.start("r2")

        async def sent() -> bool:
            return await status_counts(db) == {"sent": 1}

        await wait_until(sent, timeout=10, what="the resend")
        ids = sink.ids()
        assert len(ids) == 1  # one Message-ID
        assert sum(ids.values()) <= 2
        figure(sink_copies=sum(ids.values()), message_ids=len(ids), lost=0, nid=str(nid))
