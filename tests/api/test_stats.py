"""GET /v1/stats: counts, delivery rate, latency percentiles, retries, failures, queue age."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cancelnotify.settings import Settings
from tests.api.ops import ADMIN, READ, ManualClock, assert_problem, post_event, wait_status
from tests.conftest import Sink, running_client


async def stats(client: httpx.AsyncClient, **params: Any) -> Any:
    r = await client.get("/v1/stats", params=params, headers=READ)
    assert r.status_code == 200, r.text
    return r.json()


class TestStats:
    async def test_figures_match_what_happened(
        self, make_settings: Callable[..., Settings], sink: Sink
    ) -> None:
        clock = ManualClock()
        t0 = clock.now
        ids = []
        # Five webhooks 10 s apart while no dispatcher runs...
        async with running_client(make_settings(dispatcher_enabled=False), clock=clock) as client:
            for i in range(5):
                ids.append(
                    (await post_event(client, clock=clock, order_id=f"s{i}"))["notification_id"]
                )
                clock.advance(10)
        # ...then one sender, oldest first, at t0+100: the first is refused for good (550), the
        # second deferred once (451), the other three accepted.
        clock.now = t0 + timedelta(seconds=100)
        sink.handler.fail("rcpt", "550 5.1.1 mailbox unavailable")
        sink.handler.fail("rcpt", "451 4.3.0 try again later")
        settings = make_settings(dispatcher_concurrency=1)
        async with running_client(settings, clock=clock) as client:
            await wait_status(client, ids[0], "failed")
            await wait_status(client, ids[1], "retrying")
            for nid in ids[2:]:
                await wait_status(client, nid, "sent")
            clock.now = t0 + timedelta(seconds=200)
            await wait_status(client, ids[1], "sent")
            body = await stats(client, since=(t0 - timedelta(hours=1)).isoformat())

        assert body["total"] == 5
        assert body["by_status"] == {
            "queued": 0,
            "sending": 0,
            "retrying": 0,
            "sent": 4,
            "failed": 1,
        }
        assert body["delivery_rate"] == pytest.approx(0.8)
        # Latencies (s): 100-20, 100-30, 100-40 and 200-10 -> 60, 70, 80, 190.
        lat = body["webhook_to_smtp_seconds"]
        assert lat["p50"] == pytest.approx(75.0, abs=0.01)
        assert lat["p95"] == pytest.approx(173.5, abs=0.01)
        assert lat["p99"] == pytest.approx(186.7, abs=0.01)
        assert body["attempts"] == 6
        assert body["retries"] == 1
        assert body["retried_notifications"] == 1
        assert body["top_failure_reasons"] == [{"reason": "rejected", "count": 1}]
        assert body["oldest_queued_age_seconds"] is None

    async def test_window_and_oldest_queued_age(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        clock = ManualClock()
        t0 = clock.now
        async with running_client(make_settings(dispatcher_enabled=False), clock=clock) as client:
            await post_event(client, clock=clock, order_id="w1")
            clock.advance(60)
            await post_event(client, clock=clock, order_id="w2")
            clock.advance(30)
            everything = await stats(client)
            recent = await stats(client, since=(t0 + timedelta(seconds=30)).isoformat())
            empty = await stats(client, until=t0.isoformat())

        assert everything["by_status"]["queued"] == 2
        assert everything["oldest_queued_age_seconds"] == pytest.approx(90.0)
        assert everything["delivery_rate"] is None
        assert everything["webhook_to_smtp_seconds"] == {"p50": None, "p95": None, "p99": None}
        assert recent["total"] == 1
        assert empty["total"] == 0
        assert empty["oldest_queued_age_seconds"] == pytest.approx(90.0)  # whatever the window

    async def test_needs_a_key_and_a_valid_time(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/stats"), 401)
        assert_problem(await client.get("/v1/stats?since=soon", headers=ADMIN), 422)
