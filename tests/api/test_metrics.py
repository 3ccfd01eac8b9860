"""GET /metrics: Prometheus text with webhook outcomes, states, queue depth and sender counters."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from tests.api.ops import ADMIN, WEBHOOK, ManualClock, post_event, wait_status
from tests.conftest import Sink, encode, running_client, signed_headers


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


class TestMetrics:
    async def test_webhook_outcomes_states_and_sender_counters(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        body = encode(sample_event())
        headers = signed_headers(body)
        assert (await client.post(WEBHOOK, content=body, headers=headers)).status_code == 202
        assert (await client.post(WEBHOOK, content=body, headers=headers)).status_code == 200
        tampered = body.replace(b"Trail", b"Trall")
        assert (await client.post(WEBHOOK, content=tampered, headers=headers)).status_code == 401
        await sink.wait_for(1)
        nid = (await client.get("/v1/notifications", headers=ADMIN)).json()["items"][0]["id"]
        await wait_status(client, nid, "sent")

        m = await scrape(client)

        def webhooks(outcome: str) -> float:
            key = (("outcome", outcome), ("source", "canonical"))
            return m.get(("cancelnotify_webhooks_total", key), 0.0)

        assert (webhooks("accepted"), webhooks("duplicate"), webhooks("rejected")) == (1, 1, 1)
        assert m[("cancelnotify_notifications", (("status", "sent"),))] == 1
        assert m[("cancelnotify_notifications", (("status", "queued"),))] == 0
        assert m[("cancelnotify_queue_depth", ())] == 0
        assert m[("cancelnotify_oldest_queued_age_seconds", ())] == 0
        assert m[("cancelnotify_send_attempts_total", (("outcome", "sent"),))] == 1
        assert m[("cancelnotify_smtp_replies_total", (("code_class", "2xx"),))] == 1
        assert m[("cancelnotify_send_duration_seconds_count", ())] == 1
        assert ("cancelnotify_lease_rescues_total", ()) in m
        assert ("cancelnotify_ambiguous_sends_total", ()) in m

    async def test_queue_depth_and_oldest_age_come_from_the_database(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        clock = ManualClock()
        async with running_client(make_settings(dispatcher_enabled=False), clock=clock) as client:
            await post_event(client, clock=clock, order_id="q1")
            clock.advance(42)
            await post_event(client, clock=clock, order_id="q2")
            clock.advance(8)
            m = await scrape(client)
        assert m[("cancelnotify_queue_depth", ())] == 2
        assert m[("cancelnotify_notifications", (("status", "queued"),))] == 2
        assert m[("cancelnotify_oldest_queued_age_seconds", ())] == 50
