"""GET /v1/notifications, GET /v1/notifications/{id}, POST .../resend through the real app."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cancelnotify.settings import Settings
from tests.api.ops import (
    ADMIN,
    READ,
    ManualClock,
    assert_problem,
    post_event,
    wait_status,
)
from tests.conftest import Sink, running_client

LIST = "/v1/notifications"


async def page(client: httpx.AsyncClient, headers: dict[str, str] = ADMIN, **params: Any) -> Any:
    r = await client.get(LIST, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


class TestList:
    async def test_newest_first_with_each_filter(
        self, make_settings: Callable[..., Settings], sink: Sink
    ) -> None:
        clock = ManualClock()
        settings = make_settings()
        async with running_client(settings, clock=clock) as client:
            sink.handler.fail("rcpt", "550 5.1.1 mailbox unavailable")
            first = await post_event(
                client, clock=clock, order_id="1001", email="ana@example.com", reason="out_of_stock"
            )
            await wait_status(client, first["notification_id"], "failed")
            clock.advance(60)
            second = await post_event(
                client, clock=clock, order_id="1002", email="bo@example.com", reason="other"
            )
            clock.advance(60)
            third = await post_event(
                client,
                clock=clock,
                order_id="1003",
                email="ana@example.com",
                reason="payment_declined",
            )
            for n in (second, third):
                await wait_status(client, n["notification_id"], "sent")

            ids = [i["id"] for i in (await page(client))["items"]]
            assert ids == [
                third["notification_id"],
                second["notification_id"],
                first["notification_id"],
            ]

            def only(body: Any) -> list[str]:
                return [i["id"] for i in body["items"]]

            assert only(await page(client, status="failed")) == [first["notification_id"]]
            assert only(await page(client, status="sent")) == [
                third["notification_id"],
                second["notification_id"],
            ]
            assert only(await page(client, order_id="1002")) == [second["notification_id"]]
            assert only(await page(client, recipient="ana@example.com")) == [
                third["notification_id"],
                first["notification_id"],
            ]
            assert only(await page(client, recipient="ANA@example.com")) == []  # exact
            assert only(await page(client, reason="other")) == [second["notification_id"]]
            assert len(only(await page(client, source="canonical"))) == 3
            assert only(await page(client, source="shopify")) == []
            t0 = clock.now
            assert only(await page(client, since=(t0.replace(microsecond=0)).isoformat())) == [
                third["notification_id"]
            ]
            before_third = (t0 - timedelta(seconds=1)).isoformat()
            assert only(await page(client, until=before_third, status="sent")) == [
                second["notification_id"]
            ]
            row = (await page(client, order_id="1001"))["items"][0]
            assert row["order_number"] == "#1001"
            assert row["reason"] == "out_of_stock"
            assert row["failure_reason"] == "rejected"

    async def test_recipients_are_masked_for_read_keys(self, client: httpx.AsyncClient) -> None:
        await post_event(client, email="ana@example.com")
        assert (await page(client, READ))["items"][0]["recipient"] == "a**@example.com"
        assert (await page(client, ADMIN))["items"][0]["recipient"] == "ana@example.com"

    async def test_cursor_pages_stay_stable_while_rows_are_inserted(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        clock = ManualClock()
        async with running_client(make_settings(dispatcher_enabled=False), clock=clock) as client:
            created = []
            for i in range(5):
                created.append(
                    (await post_event(client, clock=clock, order_id=f"p{i}"))["notification_id"]
                )
                clock.advance(1)
            newest_first = created[::-1]

            one = await page(client, limit=2)
            assert [i["id"] for i in one["items"]] == newest_first[:2]
            # New cancellations arrive between page requests.
            late = [
                (await post_event(client, clock=clock, order_id=f"late{i}"))["notification_id"]
                for i in range(3)
            ]
            two = await page(client, limit=2, cursor=one["next_cursor"])
            three = await page(client, limit=2, cursor=two["next_cursor"])

            seen = [i["id"] for p in (one, two, three) for i in p["items"]]
            assert seen == newest_first
            assert three["next_cursor"] is None
            fresh = await page(client, limit=3)
            assert {i["id"] for i in fresh["items"]} == set(late)

    async def test_same_timestamp_rows_are_not_skipped_across_pages(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        clock = ManualClock()  # never advanced: every row has the same created_at
        async with running_client(make_settings(dispatcher_enabled=False), clock=clock) as client:
            created = {
                (await post_event(client, clock=clock, order_id=f"s{i}"))["notification_id"]
                for i in range(5)
            }
            seen: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 2}
                if cursor:
                    params["cursor"] = cursor
                body = await page(client, **params)
                seen += [i["id"] for i in body["items"]]
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert sorted(seen) == sorted(created)
            assert len(seen) == 5

    @pytest.mark.parametrize(
        "params",
        [
            {"cursor": "not-a-cursor"},
            {"limit": "0"},
            {"limit": "201"},
            {"status": "lost"},
            {"reason": "bored"},
            {"since": "yesterday"},
            {"order_id": "x\x00y"},
        ],
    )
    async def test_bad_query_is_a_problem(
        self, client: httpx.AsyncClient, params: dict[str, str]
    ) -> None:
        r = await client.get(LIST, params=params, headers=ADMIN)
        body = assert_problem(r, 422)
        assert body["errors"][0]["field"]


class TestDetail:
    async def test_sent_notification_shows_subject_timeline_cancellation_and_message_id(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        made = await post_event(client, request_id="req-order-1001", order_id="1001")
        read = await wait_status(client, made["notification_id"], "sent")
        await sink.wait_for(1)
        assert read["message_id"] == sink.messages[0].message_id
        assert "#1001" in read["subject"]
        assert read["subject"] == str(sink.messages[0].message["Subject"])
        [attempt] = read["attempt_timeline"]
        assert attempt["outcome"] == "sent"
        assert attempt["smtp_code"] == 250
        assert attempt["smtp_text"]
        assert attempt["duration_ms"] >= 0
        assert attempt["started_at"]
        assert read["cancellation"]["order_id"] == "1001"
        assert read["cancellation"]["id"] == made["cancellation_id"]
        assert read["engagement"] == []
        assert read["request_id"] == "req-order-1001"
        assert read["sent_at"]

    async def test_failure_is_explained_and_addresses_masked_for_read_keys(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        sink.handler.fail("rcpt", "550 5.1.1 <ana@example.com>: Recipient address rejected")
        made = await post_event(client, email="ana@example.com")
        admin = await wait_status(client, made["notification_id"], "failed")
        assert admin["failure_reason"] == "rejected"
        assert admin["attempt_timeline"][0]["smtp_code"] == 550
        assert "ana@example.com" in admin["last_error"]
        r = await client.get(f"/v1/notifications/{made['notification_id']}", headers=READ)
        read = r.json()
        assert read["recipient"] == "a**@example.com"
        assert "ana@example.com" not in r.text
        assert "a**@example.com" in read["attempt_timeline"][0]["smtp_text"]

    async def test_unknown_id_is_404_problem(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(f"{LIST}/{uuid.uuid4()}", headers=READ), 404)


class TestResend:
    async def test_resend_sends_a_new_email_audited_and_idempotent(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        made = await post_event(client, order_id="1001")
        nid = made["notification_id"]
        await wait_status(client, nid, "sent")
        url = f"{LIST}/{nid}/resend"
        headers = {**ADMIN, "idempotency-key": "ticket-4711", "x-request-id": "req-resend-1"}
        body = {"reason": "customer says it never arrived (ticket 4711)"}

        first = await client.post(url, json=body, headers=headers)
        again = await client.post(url, json=body, headers=headers)

        assert first.status_code == 201, first.text
        assert again.status_code == 200
        new = first.json()
        assert again.json()["id"] == new["id"]
        assert new["resend_of_id"] == nid
        assert new["status"] in ("queued", "sending", "sent")
        await wait_status(client, new["id"], "sent")
        await sink.wait_for(2)
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 2  # the replay sent nothing
        ids = {m.message_id for m in sink.messages}
        assert len(ids) == 2
        assert new["message_id"] in ids

        original = (await client.get(f"{LIST}/{nid}", headers=ADMIN)).json()
        assert original["resends"] == [new["id"]]
        [audit] = original["audit"]
        assert audit["action"] == "resend"
        assert audit["api_key_name"] == "admin"
        assert audit["reason"] == body["reason"]
        assert audit["result_notification_id"] == new["id"]
        assert audit["idempotency_key"] == "ticket-4711"
        assert audit["request_id"] == "req-resend-1"
        assert audit["created_at"]
        listed = (await page(client, order_id="1001"))["items"]
        assert [i["id"] for i in listed] == [new["id"], nid]

    async def test_without_a_key_each_resend_is_a_new_email(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        nid = (await post_event(client))["notification_id"]
        await wait_status(client, nid, "sent")
        url = f"{LIST}/{nid}/resend"
        a = await client.post(url, json={"reason": "one"}, headers=ADMIN)
        b = await client.post(url, json={"reason": "two"}, headers=ADMIN)
        assert (a.status_code, b.status_code) == (201, 201)
        assert a.json()["id"] != b.json()["id"]
        await sink.wait_for(3)

    async def test_a_key_reused_for_another_notification_is_refused(
        self, client: httpx.AsyncClient
    ) -> None:
        one = (await post_event(client, order_id="a1"))["notification_id"]
        two = (await post_event(client, order_id="a2"))["notification_id"]
        for nid in (one, two):
            await wait_status(client, nid, "sent")
        headers = {**ADMIN, "idempotency-key": "k-1"}
        ok = await client.post(f"{LIST}/{one}/resend", json={"reason": "x"}, headers=headers)
        assert ok.status_code == 201
        bad = await client.post(f"{LIST}/{two}/resend", json={"reason": "x"}, headers=headers)
        assert_problem(bad, 409)

    async def test_concurrent_requests_with_one_key_make_one_email(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        nid = (await post_event(client))["notification_id"]
        await wait_status(client, nid, "sent")
        headers = {**ADMIN, "idempotency-key": "double-click"}
        responses = await asyncio.gather(
            *(
                client.post(f"{LIST}/{nid}/resend", json={"reason": "x"}, headers=headers)
                for _ in range(5)
            )
        )
        assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
        assert len({r.json()["id"] for r in responses}) == 1
        await sink.wait_for(2)
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 2

    async def test_in_flight_notification_cannot_be_resent(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        async with running_client(make_settings(dispatcher_enabled=False)) as client:
            nid = (await post_event(client))["notification_id"]
            r = await client.post(f"{LIST}/{nid}/resend", json={"reason": "x"}, headers=ADMIN)
            assert "queued" in assert_problem(r, 409)["detail"]

    async def test_read_key_unknown_id_and_missing_reason(self, client: httpx.AsyncClient) -> None:
        nid = (await post_event(client))["notification_id"]
        await wait_status(client, nid, "sent")
        url = f"{LIST}/{nid}/resend"
        assert_problem(await client.post(url, json={"reason": "x"}, headers=READ), 403)
        assert_problem(await client.post(url, json={"reason": "x"}), 401)
        missing = f"{LIST}/{uuid.uuid4()}/resend"
        assert_problem(await client.post(missing, json={"reason": "x"}, headers=ADMIN), 404)
        body = assert_problem(await client.post(url, json={}, headers=ADMIN), 422)
        assert body["errors"][0]["field"] == "reason"
