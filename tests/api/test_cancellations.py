"""GET /v1/cancellations/{id} and GET /v1/cancellations?order_id=: the "order 1001" question."""

from __future__ import annotations

import uuid

import httpx

from cancelnotify.samples import sample_event
from tests.api.ops import ADMIN, READ, WEBHOOK, assert_problem, post_event, wait_status
from tests.conftest import Sink, encode, signed_headers


class TestByOrder:
    async def test_did_the_customer_of_order_1001_get_the_email(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        first = await post_event(client, order_id="1001", email="ana@example.com")
        await post_event(client, order_id="2002")
        # The shop fires a second event for the same order: stored, not emailed twice.
        body = encode(sample_event(order_id="1001"))
        again = await client.post(WEBHOOK, content=body, headers=signed_headers(body))
        assert again.status_code == 200
        await wait_status(client, first["notification_id"], "sent")

        r = await client.get("/v1/cancellations", params={"order_id": "1001"}, headers=READ)

        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert len(items) == 2
        assert items[0]["received_at"] >= items[1]["received_at"]  # newest first
        original = next(i for i in items if i["id"] == first["cancellation_id"])
        assert original["order_id"] == "1001"
        assert original["order_number"] == "#1001"
        assert original["reason"] == "out_of_stock"
        assert original["reference"].startswith("CX-")
        [email] = original["notifications"]
        assert email["id"] == first["notification_id"]
        assert email["status"] == "sent"
        assert email["recipient"] == "a**@example.com"
        assert email["message_id"] == sink.messages[0].message_id
        assert "ana@example.com" not in r.text

    async def test_resends_are_listed_after_the_original(self, client: httpx.AsyncClient) -> None:
        made = await post_event(client, order_id="1001")
        await wait_status(client, made["notification_id"], "sent")
        resend = await client.post(
            f"/v1/notifications/{made['notification_id']}/resend",
            json={"reason": "typo in the address was fixed"},
            headers=ADMIN,
        )
        assert resend.status_code == 201
        r = await client.get(f"/v1/cancellations/{made['cancellation_id']}", headers=ADMIN)
        assert [n["id"] for n in r.json()["notifications"]] == [
            made["notification_id"],
            resend.json()["id"],
        ]
        assert r.json()["notifications"][0]["recipient"] == "ana@example.com"  # admin sees it

    async def test_source_filter_unknown_order_and_missing_order_id(
        self, client: httpx.AsyncClient
    ) -> None:
        await post_event(client, order_id="1001")
        find = "/v1/cancellations"
        r = await client.get(find, params={"order_id": "1001", "source": "shopify"}, headers=READ)
        assert r.json() == {"items": []}
        r = await client.get(find, params={"order_id": "nope"}, headers=READ)
        assert r.json() == {"items": []}
        body = assert_problem(await client.get(find, headers=READ), 422)
        assert body["errors"][0]["field"] == "query.order_id"


class TestById:
    async def test_detail_and_404(self, client: httpx.AsyncClient) -> None:
        made = await post_event(client, order_id="1001")
        r = await client.get(f"/v1/cancellations/{made['cancellation_id']}", headers=READ)
        assert r.status_code == 200
        body = r.json()
        assert body["source"] == "canonical"
        assert body["event_id"].startswith("evt_")
        assert body["webhook_id"].startswith("msg_")
        assert body["occurred_at"]
        assert [n["id"] for n in body["notifications"]] == [made["notification_id"]]
        assert_problem(await client.get(f"/v1/cancellations/{uuid.uuid4()}", headers=READ), 404)
        assert_problem(await client.get("/v1/cancellations/not-a-uuid", headers=READ), 422)
