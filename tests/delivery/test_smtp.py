"""SMTP faults against the real app and a real aiosmtpd relay: reply codes, ambiguity, outages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.ext.asyncio import AsyncEngine

from cancelnotify.metrics import Metrics
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from cancelnotify.states import max_attempts_within
from tests.conftest import encode, running_client, signed_headers
from tests.delivery.conftest import RestartableSink, rows, scalar, status_counts, wait_until

URL = "/v1/webhooks/order-cancelled"


async def outcomes(db: AsyncEngine) -> list[str]:
    found = await rows(db, "SELECT outcome FROM delivery_attempts ORDER BY number")
    return [o for (o,) in found]


async def final(db: AsyncEngine, count: int = 1, timeout: float = 15) -> dict[str, int]:
    """Wait until every notification is sent or failed; return the status counts."""

    async def done() -> bool:
        counts = await status_counts(db)
        return sum(counts.get(s, 0) for s in ("sent", "failed")) >= count

    await wait_until(done, timeout, "sent or failed")
    return await status_counts(db)


def metric(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    return 0.0 if value is None else value


class _App:
    def __init__(self, settings: Settings) -> None:
        self.rc = running_client(settings)

    async def __aenter__(self) -> _App:
        self.client = await self.rc.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rc.__aexit__()

    @property
    def metrics(self) -> Metrics:
        metrics: Metrics = self.rc.app.state.metrics
        return metrics

    async def post(self, **event: Any) -> str:
        body = encode(sample_event(**event))
        r = await self.client.post(URL, content=body, headers=signed_headers(body))
        assert r.status_code == 202, r.text
        return str(r.json()["notification_id"])


TRANSIENT = ["421 4.3.0 closing", "450 4.2.0 mailbox busy", "451 4.3.0 local error"]
TRANSIENT += ["452 4.5.3 insufficient storage", "454 4.7.0 throttled (SES)"]
TRANSIENT += ["552 5.5.3 Too many recipients"]
PERMANENT = ["550 5.1.1 no such user", "553 5.1.3 bad address", "554 5.7.1 rejected"]
PERMANENT += ["552 5.3.4 message too big"]
CONFIG = ["530 5.7.0 Authentication required", "535 5.7.8 Authentication credentials invalid"]


class TestReplyCodeMatrix:
    @pytest.mark.parametrize("stage", ["rcpt", "data"])
    @pytest.mark.parametrize("reply", TRANSIENT)
    async def test_transient_reply_is_retried_then_delivered_once(
        self,
        stage: str,
        reply: str,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        sink.handler.fail(stage, reply, times=2)
        async with _App(make_settings()) as app:
            await app.post()
            assert await final(db) == {"sent": 1}
        assert await outcomes(db) == ["transient", "transient", "sent"]
        assert len(sink.messages) == 1
        figure(code=reply[:3], stage=stage, attempts=3, sent=1, duplicates=0, lost=0)

    @pytest.mark.parametrize("stage", ["rcpt", "data"])
    @pytest.mark.parametrize("reply", PERMANENT)
    async def test_permanent_reply_fails_after_exactly_one_attempt(
        self,
        stage: str,
        reply: str,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        sink.handler.fail(stage, reply, times=5)
        async with _App(make_settings()) as app:
            await app.post()
            assert await final(db) == {"failed": 1}
            await asyncio.sleep(0.3)  # no retry comes
        assert await outcomes(db) == ["permanent"]
        found = await rows(db, "SELECT failure_reason, last_error FROM notifications")
        assert found[0][0] == "rejected"
        assert reply[4:] in found[0][1]
        assert len(sink.messages) == 0
        figure(code=reply[:3], stage=stage, attempts=1, state="failed")

    @pytest.mark.parametrize("stage", ["rcpt", "data"])
    @pytest.mark.parametrize("reply", CONFIG)
    async def test_auth_reply_pauses_sending_then_delivers_once(
        self,
        stage: str,
        reply: str,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        pause = 1.0
        sink.handler.fail(stage, reply, times=1)
        async with _App(make_settings(smtp_auth_pause_seconds=pause)) as app:
            await app.post(order_id="1")

            async def one_attempt() -> bool:
                return len(await outcomes(db)) >= 1

            await wait_until(one_attempt, 10, "the first attempt")
            assert metric(app.metrics, "cancelnotify_sending_paused") == 1
            # While paused nothing is claimed, not even a fresh notification.
            await app.post(order_id="2")
            await asyncio.sleep(pause / 2)
            assert await outcomes(db) == ["config"]
            assert len(sink.messages) == 0
            t0 = time.monotonic()
            assert await final(db, 2) == {"sent": 2}
            resumed = time.monotonic() - t0
            assert metric(app.metrics, "cancelnotify_sending_paused") == 0
        assert sorted(await outcomes(db)) == ["config", "sent", "sent"]
        assert len(sink.ids()) == 2
        assert len(sink.messages) == 2
        # The configuration error is not the message's failure: no backoff budget spent.
        assert await scalar(db, "SELECT count(*) FROM notifications WHERE status='failed'") == 0
        assert any(r.levelname == "ERROR" and "PAUSED" in r.getMessage() for r in caplog.records)
        figure(
            code=reply[:3], stage=stage, paused_metric=1, sent=2, resumed_after_s=round(resumed, 2)
        )

    async def test_real_auth_failure_pauses_until_the_relay_accepts_us(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        accept = False

        def authenticator(*args: Any) -> AuthResult:
            data = args[-1]
            ok = accept and isinstance(data, LoginPassword) and data.password == b"pw"
            return AuthResult(success=ok, handled=False)

        await sink.stop()
        sink.kwargs = {
            "authenticator": authenticator,
            "auth_required": True,
            "auth_require_tls": False,
        }
        await sink.start()
        settings = make_settings(
            smtp_username="shop", smtp_password="pw", smtp_auth_pause_seconds=0.8
        )
        async with _App(settings) as app:
            await app.post()

            async def one_attempt() -> bool:
                return len(await outcomes(db)) >= 1

            await wait_until(one_attempt, 10, "the first attempt")
            assert metric(app.metrics, "cancelnotify_sending_paused") == 1
            await asyncio.sleep(1.0)  # one probe during the pause window at most
            attempts_while_paused = len(await outcomes(db))
            assert attempts_while_paused <= 2
            accept = True
            assert await final(db) == {"sent": 1}
            assert metric(app.metrics, "cancelnotify_sending_paused") == 0
        assert set(await outcomes(db)) == {"config", "sent"}
        assert len(sink.messages) == 1
        figure(code=535, attempts_while_paused=attempts_while_paused, sent=1, duplicates=0)


class TestAmbiguousFinalDot:
    async def test_connection_cut_after_the_dot_resends_with_the_same_message_id(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        sink.handler.drop_after_data = 1
        async with _App(make_settings()) as app:
            await app.post()
            assert await final(db) == {"sent": 1}
            ambiguous = metric(app.metrics, "cancelnotify_ambiguous_sends_total")
        assert await outcomes(db) == ["ambiguous", "sent"]
        ids = sink.ids()
        assert len(ids) == 1
        assert sum(ids.values()) == 2
        assert ambiguous == 1
        figure(sink_copies=2, message_ids=1, ambiguous_sends_total=ambiguous, lost=0)

    async def test_reply_slower_than_the_data_timeout_is_ambiguous(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        sink.handler.delay_data(1.0, times=1)
        async with _App(make_settings(smtp_data_timeout_seconds=0.3)) as app:
            await app.post()
            assert await final(db) == {"sent": 1}
            ambiguous = metric(app.metrics, "cancelnotify_ambiguous_sends_total")
        assert await outcomes(db) == ["ambiguous", "sent"]
        ids = sink.ids()
        assert len(ids) == 1
        assert sum(ids.values()) <= 2
        assert ambiguous == 1
        figure(sink_copies=sum(ids.values()), message_ids=1, ambiguous_sends_total=ambiguous)


class TestRelayOutage:
    async def test_webhooks_are_accepted_during_an_outage_and_all_delivered_after(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        base, cap, count = 0.1, 0.8, 30
        settings = make_settings(retry_base_seconds=base, retry_max_seconds=cap)
        async with _App(settings) as app:
            await sink.stop()
            t_down = time.monotonic()
            for i in range(count):
                await app.post(order_id=f"o{i}")
            await asyncio.sleep(2.5)
            assert len(sink.messages) == 0
            await sink.start()
            t_up = time.monotonic()
            assert await final(db, count, timeout=30) == {"sent": count}
            recovery = time.monotonic() - t_up
        per_message = await rows(
            db, "SELECT count(*) FROM delivery_attempts GROUP BY notification_id"
        )
        most = max(n for (n,) in per_message)
        # No hot loop: never more attempts than the backoff schedule allows in that time.
        bound = max_attempts_within(time.monotonic() - t_down, base, cap) + 1
        assert most <= bound
        assert len(sink.messages) == count
        assert len(sink.ids()) == count
        assert recovery <= cap + settings.poll_interval_seconds + 5
        figure(
            webhooks_2xx=f"{count}/{count}",
            sent=count,
            lost=0,
            duplicates=0,
            max_attempts=most,
            schedule_bound=bound,
            recovery_s=round(recovery, 2),
        )

    async def test_a_notice_that_cannot_go_out_in_its_lifetime_ends_failed(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
    ) -> None:
        sink.handler.fail("rcpt", "451 4.3.0 try later", times=10_000)
        async with _App(make_settings(send_lifetime_seconds=1.0)) as app:
            await app.post()
            assert await final(db) == {"failed": 1}
        found = await rows(db, "SELECT failure_reason FROM notifications")
        assert found[0][0] == "lifetime_exceeded"
        # Retries until the deadline; a retry that comes due just after it is not sent at all.
        seen = await outcomes(db)
        assert "transient" in seen
        assert set(seen) <= {"transient", "expired"}
        assert len(sink.messages) == 0


class TestConnections:
    async def test_connections_are_reused_and_a_dropped_one_is_replaced(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
        figure: Callable[..., None],
    ) -> None:
        async with _App(make_settings(smtp_pool_size=2, dispatcher_concurrency=8)) as app:
            for i in range(20):
                await app.post(order_id=f"a{i}")
            assert await final(db, 20) == {"sent": 20}
            first = sink.handler.connections
            assert first <= 2
            # The relay (or a NAT box) cuts the idle connections.
            await asyncio.sleep(0.1)
            assert sink.handler.drop_connections() >= 1
            await asyncio.sleep(0.1)
            for i in range(5):
                await app.post(order_id=f"b{i}")
            assert await final(db, 25) == {"sent": 25}
        assert set(await outcomes(db)) == {"sent"}  # no attempt lost to the dead connections
        assert len(sink.messages) == 25
        assert 1 <= sink.handler.connections - first <= 2
        figure(messages=25, connections=sink.handler.connections, pool_size=2)

    async def test_421_closes_the_connection_and_the_retry_reconnects(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
    ) -> None:
        sink.handler.fail("mail", "421 4.3.2 shutting down", times=1)
        async with _App(make_settings()) as app:
            await app.post()
            assert await final(db) == {"sent": 1}
        assert await outcomes(db) == ["transient", "sent"]
        assert sink.handler.connections == 2
        assert len(sink.messages) == 1

    async def test_starttls_fails_closed_when_the_relay_does_not_offer_it(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
    ) -> None:
        async with _App(make_settings(smtp_security="starttls")) as app:
            await app.post()

            async def tried() -> bool:
                return len(await outcomes(db)) >= 2

            await wait_until(tried, 10, "two attempts")
        texts = await rows(db, "SELECT outcome, smtp_text FROM delivery_attempts")
        assert all(o == "transient" and "STARTTLS" in t for o, t in texts)
        assert sink.handler.commands["mail"] == 0  # not a byte of mail in the clear
        assert len(sink.messages) == 0
        assert (await status_counts(db)).keys() <= {"retrying", "sending"}


class TestTransferEncoding:
    async def test_8bit_to_a_relay_that_offers_8bitmime_quoted_printable_to_one_that_does_not(
        self,
        make_settings: Callable[..., Settings],
        sink: RestartableSink,
        db: AsyncEngine,
    ) -> None:
        async with _App(make_settings()) as app:
            await app.post(order_id="8bit", locale="es-ES")
            assert await final(db) == {"sent": 1}
            # The same relay, restarted without 8BITMIME (aiosmtpd offers it unless it decodes).
            await sink.stop()
            sink.kwargs = {"decode_data": True}
            await sink.start()
            await app.post(order_id="7bit", locale="es-ES")
            assert await final(db, 2) == {"sent": 2}
        eight, seven = sink.messages
        assert eight.mail_options == ["BODY=8BITMIME"]
        assert seven.mail_options == []
        encodings = [
            [p["Content-Transfer-Encoding"] for p in m.message.iter_parts()] for m in sink.messages
        ]
        assert encodings == [["8bit", "8bit"], ["quoted-printable", "quoted-printable"]]
        assert "Hola, Ana:" in eight.part("plain")
        assert "Hola, Ana:" in seven.part("plain")
        assert "¿".encode() in eight.data  # as it is, not =C2=BF
        assert seven.data.isascii()
        assert all(len(line) <= 998 for m in sink.messages for line in m.data.split(b"\r\n"))

    async def test_lines_that_start_with_a_dot_arrive_as_written(
        self, make_settings: Callable[..., Settings], sink: RestartableSink, db: AsyncEngine
    ) -> None:
        # SMTP ends the message at a line holding only "."; the client doubles a leading dot
        # (RFC 5321 4.5.2) and the relay removes it. A note made of such lines must survive.
        note = "first\n.\n..\n.hidden line\nend."
        async with _App(make_settings()) as app:
            await app.post(order_id="dots", cancellation={"reason": "other", "note": note})
            assert await final(db) == {"sent": 1}
        [msg] = sink.messages
        lines = msg.data.split(b"\r\n")
        assert {b".", b"..", b".hidden line"} <= set(lines)  # un-stuffed by the relay
        for part in (msg.part("plain"), msg.part("html")):
            assert "first\n.\n..\n.hidden line\nend." in part.replace("\r\n", "\n")
