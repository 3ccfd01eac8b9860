"""Beyond the email: status page, refund follow-up, call-back queue, engagement, KPIs, purge."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.samples import sample_event
from cancelnotify.services.retention import purge
from cancelnotify.settings import Settings
from tests.api.ops import ADMIN, READ, ManualClock, assert_problem, post_event, wait_status
from tests.conftest import Sink, encode, running_client, signed_headers

BASE = "http://127.0.0.1:8000"


def link(body: str, kind: str) -> str:
    """The path of the first `{BASE}/{kind}/...` link in an email part."""
    match = re.search(rf"{re.escape(BASE)}(/{kind}/[A-Za-z0-9_.-]+)", body)
    assert match, f"no /{kind}/ link in the email"
    return match.group(1)


async def refund_event(
    client: httpx.AsyncClient, cid: str, kind: str, amount: str = "129.90", **extra: Any
) -> httpx.Response:
    headers = dict(ADMIN)
    if "key" in extra:
        headers["idempotency-key"] = extra.pop("key")
    return await client.post(
        f"/v1/cancellations/{cid}/refund-events",
        json={"kind": kind, "amount": amount, **extra},
        headers=headers,
    )


class TestStatusPage:
    async def test_refund_events_move_the_page_and_completed_emails_once(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        sent = await post_event(client, order_id="7001", locale="de-DE")
        await wait_status(client, sent["notification_id"], "sent")
        path = link(sink.messages[0].part("plain"), "status")

        page = await client.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp
        assert "<script" not in page.text
        assert '<html lang="de">' in page.text
        assert "Bestellung #7001" in page.text
        assert "Trail shoe" in page.text
        assert "129,90" in page.text
        assert "Erstattung veranlasst" in page.text
        assert 'class="current" aria-current="step"' in page.text
        # No personal data beyond the order: no name, email, phone or card digits.
        for private in ("Ana", "ana@example.com", "+34", "García"):
            assert private not in page.text
        assert not re.search(r"(?<![0-9a-f-])4242(?![0-9a-f])", page.text)  # not in an id's hex

        cid = sent["cancellation_id"]
        r = await refund_event(client, cid, "initiated")
        assert r.status_code == 201, r.text
        assert r.json()["refund_status"] == "initiated"
        page = await client.get(path)
        assert page.text.count('class="done"') == 2

        first = await refund_event(client, cid, "completed")
        second = await refund_event(client, cid, "completed")
        assert first.status_code == second.status_code == 201
        follow_up = first.json()["follow_up_notification_id"]
        assert follow_up is not None
        assert second.json()["follow_up_notification_id"] == follow_up
        assert second.json()["follow_up_duplicate"] is True
        await wait_status(client, follow_up, "sent")
        await sink.wait_for(2)
        await client.get("/healthz")
        assert len(sink.messages) == 2
        email = sink.messages[1]
        assert email.message_id != sink.messages[0].message_id
        assert "Ihre Erstattung für Bestellung #7001 ist unterwegs" in str(email.message["Subject"])
        assert "129,90" in email.part("plain")
        page = await client.get(path)
        assert page.text.count('class="done"') == 3
        assert "Erstattung abgeschlossen" in page.text

    async def test_accept_language_is_the_fallback(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        sent = await post_event(client, order_id="7002", locale="pt-BR")
        await wait_status(client, sent["notification_id"], "sent")
        path = link(sink.messages[0].part("plain"), "status")
        page = await client.get(path, headers={"accept-language": "nl-NL,nl;q=0.9,en;q=0.5"})
        assert '<html lang="nl">' in page.text
        assert "Geannuleerd" in page.text

    async def test_tampered_or_foreign_token_is_refused(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        sent = await post_event(client, order_id="7003")
        await wait_status(client, sent["notification_id"], "sent")
        path = link(sink.messages[0].part("plain"), "status")
        token = path.rsplit("/", 1)[1]
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert_problem(await client.get(f"/status/{tampered}"), 404)
        feedback_token = link(sink.messages[0].part("html"), "feedback").rsplit("/", 1)[1]
        assert_problem(await client.get(f"/status/{feedback_token}"), 404)


class TestRefundEvents:
    async def test_idempotency_key_replays_and_validation(self, client: httpx.AsyncClient) -> None:
        sent = await post_event(client, order_id="7101")
        cid = sent["cancellation_id"]
        a = await refund_event(client, cid, "initiated", key="k1")
        b = await refund_event(client, cid, "initiated", key="k1")
        assert (a.status_code, b.status_code) == (201, 200)
        assert a.json()["event"]["id"] == b.json()["event"]["id"]
        assert_problem(await refund_event(client, cid, "completed", key="k1"), 409)
        assert_problem(await refund_event(client, cid, "completed", amount="12,5"), 422)
        assert_problem(await refund_event(client, cid, "done"), 422)
        unknown = "00000000-0000-0000-0000-000000000000"
        assert_problem(await refund_event(client, unknown, "completed"), 404)
        r = await client.post(
            f"/v1/cancellations/{cid}/refund-events",
            json={"kind": "completed", "amount": "1.00"},
            headers=READ,
        )
        assert_problem(r, 403)


class TestCallbacks:
    async def test_high_value_cancellation_opens_a_task_and_ops_close_it(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        clock = ManualClock()
        settings = make_settings(
            callback_min_total={"EUR": "500"},
            callback_reasons=["fraud_suspected"],
            callback_due_within_seconds=3600,
            dispatcher_enabled=False,
        )
        async with running_client(settings, clock=clock) as client:
            big = sample_event(order_id="7201")
            big["order"]["total"] = "899.00"
            body = encode(big)
            r = await client.post(
                "/v1/webhooks/order-cancelled",
                content=body,
                headers=signed_headers(body, timestamp=int(clock().timestamp())),
            )
            assert r.status_code == 202, r.text
            clock.advance(1)
            await post_event(client, clock=clock, order_id="7202")  # 129.90: no call
            clock.advance(1)
            await post_event(client, clock=clock, order_id="7203", reason="fraud_suspected")

            page = (await client.get("/v1/callbacks", headers=READ)).json()
            assert [t["order_number"] for t in page["items"]] == ["#7201", "#7203"]
            task = page["items"][0]
            assert task["rules"] == "high_value"
            assert task["phone"] == "+34 600 000 000"
            assert task["first_name"] == "Ana"
            assert task["overdue"] is False
            assert "email" not in task
            assert "ana@example.com" not in str(page)

            clock.advance(3601)
            overdue = (await client.get("/v1/callbacks?overdue=true", headers=READ)).json()
            assert len(overdue["items"]) == 2
            assert all(t["overdue"] for t in overdue["items"])
            one = (await client.get("/v1/callbacks?limit=1", headers=READ)).json()
            assert one["next_cursor"]
            rest = await client.get(f"/v1/callbacks?cursor={one['next_cursor']}", headers=READ)
            assert [t["order_number"] for t in rest.json()["items"]] == ["#7203"]

            done = await client.post(
                f"/v1/callbacks/{task['id']}/complete",
                json={"outcome": "reached", "note": "Offered 10% on a new order"},
                headers=ADMIN,
            )
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "completed"
            assert done.json()["completed_by"] == "admin"
            again = await client.post(
                f"/v1/callbacks/{task['id']}/complete", json={"outcome": "reached"}, headers=ADMIN
            )
            assert_problem(again, 409)
            as_reader = await client.post(
                f"/v1/callbacks/{task['id']}/complete", json={"outcome": "reached"}, headers=READ
            )
            assert_problem(as_reader, 403)
            left = (await client.get("/v1/callbacks", headers=READ)).json()
            assert [t["order_number"] for t in left["items"]] == ["#7203"]
            stats = (await client.get("/v1/stats", headers=READ)).json()
            assert stats["callbacks"] == {"open": 1, "overdue": 1}


class TestEngagement:
    async def test_feedback_twice_counts_once(self, client: httpx.AsyncClient, sink: Sink) -> None:
        sent = await post_event(client, order_id="7301", locale="fr-FR")
        await wait_status(client, sent["notification_id"], "sent")
        html = sink.messages[0].part("html")
        yes = re.findall(rf"{re.escape(BASE)}(/feedback/[A-Za-z0-9_-]+)", html)[0]
        first = await client.get(yes)
        second = await client.get(yes)
        assert first.status_code == second.status_code == 200
        assert "Merci pour votre avis" in first.text
        assert "content-security-policy" in first.headers
        detail = await client.get(f"/v1/notifications/{sent['notification_id']}", headers=READ)
        events = detail.json()["engagement"]
        assert [(e["type"], e["detail"]) for e in events] == [("feedback", "yes")]
        stats = (await client.get("/v1/stats", headers=READ)).json()
        assert stats["feedback"] == {"yes": 1, "no": 0, "score": 1.0}
        assert stats["opens"] == {"enabled": False, "opened": None, "rate": None}
        assert stats["cancellation_to_email_seconds"]["p50"] is not None

    async def test_tampered_feedback_records_nothing(
        self, client: httpx.AsyncClient, sink: Sink
    ) -> None:
        sent = await post_event(client, order_id="7302")
        await wait_status(client, sent["notification_id"], "sent")
        path = link(sink.messages[0].part("html"), "feedback")
        token = path.rsplit("/", 1)[1]
        flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
        assert_problem(await client.get(f"/feedback/{flipped}"), 404)
        assert_problem(await client.get("/feedback/not-a-token-at-all"), 404)
        detail = await client.get(f"/v1/notifications/{sent['notification_id']}", headers=READ)
        assert detail.json()["engagement"] == []

    async def test_tracking_counts_unique_opens_and_clicks_and_refuses_tampering(
        self, make_settings: Callable[..., Settings], sink: Sink
    ) -> None:
        async with running_client(make_settings(tracking_enabled=True)) as client:
            sent = await post_event(client, order_id="7303")
            await wait_status(client, sent["notification_id"], "sent")
            html = sink.messages[0].part("html")
            pixel = link(html, "o")
            clicks = re.findall(rf"{re.escape(BASE)}(/c/[A-Za-z0-9_-]+)", html)
            assert "https://shop.example/cart/reorder/" not in html  # wrapped, signed
            for _ in range(2):
                r = await client.get(pixel)
                assert r.status_code == 200
                assert r.headers["content-type"] == "image/gif"
            redirects = [await client.get(c) for c in clicks]
            targets = {r.headers["location"] for r in redirects}
            assert all(r.status_code == 302 for r in redirects)
            assert "https://shop.example/cart/reorder/1001" in targets
            assert "https://shop.example/p/trail-shoe-v2" in targets
            # Tampering with the target (inside the signed token) is refused; nothing recorded.
            token = clicks[0].rsplit("/", 1)[1]
            evil = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
            assert_problem(await client.get(f"/c/{evil}"), 404)
            assert_problem(await client.get("/c/aHR0cHM6Ly9ldmlsLmV4YW1wbGUvcGhpc2g"), 404)
            detail = await client.get(f"/v1/notifications/{sent['notification_id']}", headers=READ)
            events = sorted((e["type"], e["detail"]) for e in detail.json()["engagement"])
            # Two opens, and several clicks per link: each counted once per email.
            assert events == [("click", "alternative"), ("click", "reorder"), ("open", None)]
            stats = (await client.get("/v1/stats", headers=READ)).json()
            assert stats["opens"] == {"enabled": True, "opened": 1, "rate": 1.0}
            assert stats["click_through"]["reorder"] == 1.0
            assert stats["click_through"]["alternatives"] == 1.0


class TestPurge:
    async def test_old_rows_lose_personal_data_but_dedupe_still_works(
        self, make_settings: Callable[..., Settings], sink: Sink, database_url: str
    ) -> None:
        settings = make_settings(callback_min_total={"EUR": "100"})
        async with running_client(settings) as client:
            event = sample_event(order_id="7401")
            body = encode(event)
            first = await client.post(
                "/v1/webhooks/order-cancelled", content=body, headers=signed_headers(body)
            )
            assert first.status_code == 202
            nid, cid = first.json()["notification_id"], first.json()["cancellation_id"]
            await wait_status(client, nid, "sent")
            status_path = link(sink.messages[0].part("plain"), "status")
            yes = link(sink.messages[0].part("html"), "feedback")
            assert (await client.get(yes)).status_code == 200
            [task] = (await client.get("/v1/callbacks", headers=READ)).json()["items"]
            await client.post(
                f"/v1/callbacks/{task['id']}/complete", json={"outcome": "reached"}, headers=ADMIN
            )

            engine = create_async_engine(database_url)
            sessionmaker = client._transport.app.state.sessionmaker  # type: ignore[attr-defined]
            async with sessionmaker.begin() as session:
                counts = await purge(session, older_than=timedelta(days=90), now=_later())
            assert counts["payloads"] == 1
            assert counts["bodies"] == 1
            assert counts["engagement"] == 1
            assert counts["callbacks"] == 1
            async with engine.connect() as conn:
                payload = (
                    await conn.execute(
                        text("SELECT payload FROM cancellations WHERE event_id = :e"),
                        {"e": event["event_id"]},
                    )
                ).scalar_one()
                row = (
                    await conn.execute(
                        text("SELECT subject, body_text, dedupe_key, message_id FROM notifications")
                    )
                ).one()
                engaged = (
                    await conn.execute(
                        text("SELECT notification_id, dedupe_key FROM engagement_events")
                    )
                ).one()
                phone = (await conn.execute(text("SELECT phone FROM callbacks"))).scalar_one()
            await engine.dispose()
            assert payload is None
            assert row[0] is None
            assert row[1] is None
            assert row[2]
            assert row[3]
            assert engaged[0] is None
            assert engaged[1].startswith("feedback:")
            assert phone is None

            # The same event again is still a duplicate: same ids, no second email.
            again = await client.post(
                "/v1/webhooks/order-cancelled", content=body, headers=signed_headers(body)
            )
            assert again.status_code == 200
            assert again.json()["duplicate"] is True
            assert again.json()["cancellation_id"] == cid
            # A second feedback click is still counted once; the page shows what is left.
            assert (await client.get(yes)).status_code == 200
            stats = (await client.get("/v1/stats", headers=READ)).json()
            assert stats["feedback"]["yes"] == 1
            page = await client.get(status_path)
            assert page.status_code == 200
            assert "#7401" in page.text
            assert "Trail shoe" not in page.text
            assert len(sink.messages) == 1


def _later() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC) + timedelta(days=91)
