"""POST /v1/webhooks/order-cancelled through the real app, database and SMTP server."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.api.webhooks import PlainRoute
from cancelnotify.models import Cancellation, DeliveryAttempt, Notification
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from tests.conftest import ADMIN_KEY, Sink, encode, running_client, signed_headers

URL = "/v1/webhooks/order-cancelled"


async def count_rows(settings: Settings) -> tuple[int, int, int]:
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        counts = []
        for model in (Cancellation, Notification, DeliveryAttempt):
            counts.append(
                (await conn.execute(select(func.count()).select_from(model))).scalar_one()
            )
    await engine.dispose()
    return counts[0], counts[1], counts[2]


async def wait_status(client: httpx.AsyncClient, nid: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        r = await client.get(
            f"/v1/notifications/{nid}", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        body: dict[str, object] = r.json()
        if body.get("status") == status or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)


class TestAccepted:
    async def test_signed_event_is_emailed_once_to_the_customer(
        self, client: httpx.AsyncClient, sink: Sink, settings: Settings
    ) -> None:
        event = sample_event(email="ana@example.com", order_id="1001", reason="out_of_stock")
        body = encode(event)

        r = await client.post(URL, content=body, headers=signed_headers(body))

        assert r.status_code == 202, r.text
        data = r.json()
        assert data["duplicate"] is False
        assert data["status"] == "queued"
        await sink.wait_for(1)
        msg = sink.messages[0]
        assert msg.recipients == ["ana@example.com"]
        for part in (msg.part("plain"), msg.part("html")):
            assert "Ana" in part
            assert "#1001" in part
        assert "#1001" in str(msg.message["Subject"])
        assert msg.message["Auto-Submitted"] == "auto-generated"
        read = await wait_status(client, data["notification_id"], "sent")
        assert read["status"] == "sent"
        assert read["attempts"] == 1
        assert read["message_id"] == msg.message_id
        timeline = read["attempt_timeline"]
        assert isinstance(timeline, list)
        assert [a["outcome"] for a in timeline] == ["sent"]
        assert timeline[0]["smtp_code"] == 250
        await asyncio.sleep(0.3)  # a second email would have arrived by now
        assert len(sink.messages) == 1

    async def test_unknown_fields_are_kept_in_the_stored_payload(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        event = sample_event()
        event["shop_extension"] = {"loyalty_tier": "gold"}
        body = encode(event)
        r = await client.post(URL, content=body, headers=signed_headers(body))
        assert r.status_code == 202
        engine = create_async_engine(settings.database_url)
        async with engine.connect() as conn:
            payload = (await conn.execute(select(Cancellation.payload))).scalar_one()
        await engine.dispose()
        assert payload["shop_extension"] == {"loyalty_tier": "gold"}

    async def test_rotated_secrets_and_several_signatures_are_accepted(
        self, make_settings: object, sink: Sink
    ) -> None:
        import base64

        from cancelnotify.signatures import sign
        from tests.conftest import SECRET

        new_key = b"a-brand-new-secret-for-rotation!"
        settings = make_settings(  # type: ignore[operator]
            webhook_secret=f"whsec_{base64.b64encode(new_key).decode()} {SECRET}"
        )
        async with running_client(settings) as client:
            body = encode(sample_event())
            headers = signed_headers(body)  # signed with the old secret only
            assert (await client.post(URL, content=body, headers=headers)).status_code == 202
            body2 = encode(sample_event(order_id="2002"))
            headers2 = signed_headers(body2, key=new_key)
            headers2["webhook-signature"] = "v1,bm90LWEtc2lnbmF0dXJl " + sign(
                new_key, headers2["webhook-id"], int(headers2["webhook-timestamp"]), body2
            )
            assert (await client.post(URL, content=body2, headers=headers2)).status_code == 202


async def handovers(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(r"^cancelnotify_handovers_total (\S+)$", text, re.M)
    assert match is not None, "no cancelnotify_handovers_total on /metrics"
    return float(match.group(1))


class TestHandover:
    """A replica whose dispatcher is idle sends a new row without claiming it from the queue."""

    async def test_an_idle_dispatcher_sends_the_new_row_straight_from_the_webhook(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        first = encode(sample_event(order_id="3001"))
        r = await client.post(URL, content=first, headers=signed_headers(first))
        await wait_status(client, r.json()["notification_id"], "sent")  # the queue is empty now
        before = await handovers(client)

        body = encode(sample_event(email="bo@example.com", order_id="3002"))
        r = await client.post(URL, content=body, headers=signed_headers(body))

        assert r.status_code == 202, r.text
        assert r.json()["status"] == "sending"  # born claimed by this replica, attempt 1
        await sink.wait_for(2)
        assert sink.messages[1].recipients == ["bo@example.com"]
        read = await wait_status(client, r.json()["notification_id"], "sent")
        assert read["status"] == "sent"
        assert read["attempts"] == 1
        assert read["message_id"] == sink.messages[1].message_id
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 2  # not also claimed from the queue
        assert await handovers(client) == before + 1  # what ops see on /metrics

    async def test_a_busy_dispatcher_queues_new_rows_and_sends_them_in_arrival_order(
        self, make_settings: object, sink: Sink
    ) -> None:
        settings = make_settings(dispatcher_concurrency=1)  # type: ignore[operator]
        held = sink.handler.hold("mail")
        async with running_client(settings) as client:
            answers = []
            for n in range(3):
                body = encode(sample_event(email=f"c{n}@example.com", order_id=f"400{n}"))
                r = await client.post(URL, content=body, headers=signed_headers(body))
                assert r.status_code == 202, r.text
                answers.append(r.json()["status"])
                if n == 0:
                    await asyncio.wait_for(held.reached.wait(), 10)  # its one slot is busy

            assert answers[1:] == ["queued", "queued"]
            held.release.set()
            await sink.wait_for(3)
            assert [m.recipients for m in sink.messages] == [
                ["c0@example.com"],
                ["c1@example.com"],
                ["c2@example.com"],
            ]


class TestDuplicates:
    async def test_same_webhook_id_answers_200_with_the_same_ids(
        self, client: httpx.AsyncClient, sink: Sink, settings: Settings
    ) -> None:
        body = encode(sample_event())
        headers = signed_headers(body)
        first = await client.post(URL, content=body, headers=headers)
        again = await client.post(
            URL, content=body, headers=signed_headers(body, webhook_id=headers["webhook-id"])
        )
        assert first.status_code == 202
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        for key in ("cancellation_id", "notification_id"):
            assert again.json()[key] == first.json()[key]
        await sink.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 1
        assert (await count_rows(settings))[:2] == (1, 1)

    async def test_same_event_id_under_a_new_webhook_id_is_a_duplicate(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        body = encode(sample_event())
        first = await client.post(URL, content=body, headers=signed_headers(body))
        again = await client.post(URL, content=body, headers=signed_headers(body))
        assert again.status_code == 200
        assert again.json()["notification_id"] == first.json()["notification_id"]
        assert (await count_rows(settings))[:2] == (1, 1)

    async def test_two_event_ids_for_one_order_send_one_email(
        self, client: httpx.AsyncClient, sink: Sink, settings: Settings
    ) -> None:
        a = encode(sample_event(order_id="77"))
        b = encode(sample_event(order_id="77"))
        ra = await client.post(URL, content=a, headers=signed_headers(a))
        rb = await client.post(URL, content=b, headers=signed_headers(b))
        assert ra.status_code == 202
        assert rb.status_code == 200
        assert rb.json()["duplicate"] is True
        assert rb.json()["notification_id"] == ra.json()["notification_id"]
        await sink.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 1
        assert (await count_rows(settings))[:2] == (2, 1)

    async def test_fifty_concurrent_copies_make_one_row_and_one_email(
        self, client: httpx.AsyncClient, sink: Sink, settings: Settings
    ) -> None:
        body = encode(sample_event())
        headers = signed_headers(body)
        responses = await asyncio.gather(
            *(client.post(URL, content=body, headers=headers) for _ in range(50))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 49 + [202]
        assert len({r.json()["notification_id"] for r in responses}) == 1
        await sink.wait_for(1)
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 1
        assert (await count_rows(settings))[:2] == (1, 1)


class TestRejected:
    """Each bad request gets its status and a problem+json body; nothing is stored or sent."""

    @pytest.mark.parametrize(
        ("case", "status", "field"),
        [
            ("bad_signature", 401, None),
            ("wrong_secret", 401, None),
            ("stale_timestamp", 401, None),
            ("future_timestamp", 401, None),
            ("missing_headers", 401, None),
            ("reserialised_json", 401, None),
            ("unparsable_json", 400, None),
            ("missing_field", 422, "customer.email"),
            ("undeliverable_email", 422, "customer.email"),
            ("wrong_type", 422, "order.items.0.quantity"),
            ("float_money", 422, "refund.amount"),
            ("bad_reason", 422, "cancellation.reason"),
            ("nul_character", 422, "cancellation.note"),
            ("nul_in_unknown_field", 422, "shop_extra.tags.1"),
            ("not_json_content_type", 415, None),
            ("oversized", 413, None),
        ],
    )
    async def test_rejected(
        self,
        client: httpx.AsyncClient,
        sink: Sink,
        settings: Settings,
        case: str,
        status: int,
        field: str | None,
    ) -> None:
        event = sample_event()
        body = encode(event)
        headers = signed_headers(body)
        if case == "bad_signature":
            body = body.replace(b"Trail", b"Trall")
        elif case == "wrong_secret":
            headers = signed_headers(body, key=b"another-secret-another-secret-00")
        elif case == "stale_timestamp":
            headers = signed_headers(body, timestamp=int(time.time()) - 6 * 60)
        elif case == "future_timestamp":
            headers = signed_headers(body, timestamp=int(time.time()) + 6 * 60)
        elif case == "missing_headers":
            headers = {"content-type": "application/json"}
        elif case == "reserialised_json":
            body = json.dumps(json.loads(body), indent=2).encode()
        elif case == "unparsable_json":
            body = b'{"event_id": "x",'
            headers = signed_headers(body)
        elif case in ("nul_character", "nul_in_unknown_field"):
            # PostgreSQL text and JSONB cannot hold U+0000: refused up front, naming the field.
            if case == "nul_character":
                event["cancellation"]["note"] = "out of\x00stock"
            else:
                event["shop_extra"] = {"tags": ["ok", "bad\x00"]}
            body = encode(event)
            headers = signed_headers(body)
        elif case in (
            "missing_field",
            "undeliverable_email",
            "wrong_type",
            "float_money",
            "bad_reason",
        ):
            if case == "missing_field":
                del event["customer"]["email"]
            elif case == "undeliverable_email":
                event["customer"]["email"] = "ana@shop.localhost"
            elif case == "wrong_type":
                event["order"]["items"][0]["quantity"] = "lots"
            elif case == "float_money":
                event["refund"]["amount"] = 129.9
            else:
                event["cancellation"]["reason"] = "bored"
            body = encode(event)
            headers = signed_headers(body)
        elif case == "not_json_content_type":
            headers["content-type"] = "text/plain"
        elif case == "oversized":
            event["cancellation"]["note"] = "x" * (settings.max_body_bytes + 10)
            body = encode(event)
            headers = signed_headers(body)

        r = await client.post(URL, content=body, headers=headers)

        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["status"] == status
        assert problem["title"]
        if field is not None:
            assert field in [e["field"] for e in problem["errors"]]
        assert await count_rows(settings) == (0, 0, 0)
        await asyncio.sleep(0.1)
        assert sink.messages == []

    async def test_chunked_body_over_the_limit_is_refused_while_streaming(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        sent = 0

        async def chunks():  # type: ignore[no-untyped-def]
            nonlocal sent
            for _ in range(100):
                sent += 8192
                yield b" " * 8192

        r = await client.post(URL, content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert await count_rows(settings) == (0, 0, 0)


class TestDatabaseDown:
    async def test_unreachable_database_answers_503_with_retry_after(
        self, make_settings: object
    ) -> None:
        settings = make_settings(  # type: ignore[operator]
            database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none",
            dispatcher_enabled=False,
        )
        async with running_client(settings) as client:
            body = encode(sample_event())
            r = await client.post(URL, content=body, headers=signed_headers(body))
        assert r.status_code == 503
        assert r.headers["retry-after"]
        assert r.headers["content-type"] == "application/problem+json"


def test_a_plain_route_endpoint_with_parameters_of_its_own_fails_where_it_is_declared() -> None:
    # PlainRoute calls its endpoint with the Request alone; FastAPI would have filled the rest.
    router = APIRouter(route_class=PlainRoute)

    async def endpoint(request: Request, order_id: str) -> Response:  # pragma: no cover
        return Response(order_id)

    with pytest.raises(TypeError, match="takes the Request alone"):
        router.add_api_route("/x/{order_id}", endpoint, methods=["POST"])


class TestDirectRoutes:
    """Webhooks skip FastAPI's router (`DirectRoutes`); everything around them answers as ever."""

    async def test_another_method_or_a_trailing_slash_still_gets_fastapis_answer(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.get(URL)
        assert r.status_code == 405
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["allow"] == "POST"
        assert r.headers["x-request-id"]
        body = encode(sample_event())
        r = await client.post(URL + "/", content=body, headers=signed_headers(body))
        assert r.status_code in (307, 404)  # FastAPI's redirect or not found, not an ingest

    async def test_served_under_a_root_path(self, settings: Settings, sink: Sink) -> None:
        running = running_client(settings)
        async with running:
            transport = httpx.ASGITransport(app=running.app, root_path="/notify")
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = encode(sample_event(email="root@example.com"))
                r = await client.post("/notify" + URL, content=body, headers=signed_headers(body))
                assert r.status_code == 202, r.text
                assert r.headers["x-request-id"]
                r = await client.post("/notify" + URL, content=b"{", headers=signed_headers(b"{"))
                assert r.status_code == 400
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["instance"] == "/notify" + URL
                await sink.wait_for(1)
                assert sink.messages[0].recipients == ["root@example.com"]
