"""`cancelnotify purge` as an operator runs it: old payloads and bodies go, dedupe keys stay."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.clock import utcnow
from cancelnotify.models import Cancellation, DeliveryAttempt, Notification
from cancelnotify.samples import sample_event
from tests.api.test_auth import cli
from tests.api.test_webhooks import URL, wait_status
from tests.conftest import Sink, encode, signed_headers


async def _backdate(database_url: str, days: int) -> None:
    """Make everything stored look `days` old (the typed columns keep both backends right)."""
    old = utcnow() - timedelta(days=days)
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(update(Cancellation).values(received_at=old))
        await conn.execute(update(Notification).values(created_at=old))
        await conn.execute(update(DeliveryAttempt).values(started_at=old))
    await engine.dispose()


async def _stored(database_url: str) -> tuple[object, object]:
    engine = create_async_engine(database_url)
    async with engine.connect() as conn:
        payload = (await conn.execute(text("SELECT payload FROM cancellations"))).scalar_one()
        body = (await conn.execute(text("SELECT body_text FROM notifications"))).scalar_one()
    await engine.dispose()
    return payload, body


class TestPurgeCommand:
    async def test_old_data_is_cleared_and_a_late_retry_is_still_a_duplicate(
        self,
        client: httpx.AsyncClient,
        sink: Sink,
        database_url: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        body = encode(sample_event())
        headers = signed_headers(body)
        first = await client.post(URL, content=body, headers=headers)
        await wait_status(client, first.json()["notification_id"], "sent")
        assert all(await _stored(database_url))

        code, _, _ = await cli(capsys, monkeypatch, database_url, "purge", "--older-than", "90d")
        assert code == 0
        assert all(await _stored(database_url)), "fresh data must survive a 90-day purge"

        await _backdate(database_url, 100)
        code, out, _ = await cli(capsys, monkeypatch, database_url, "purge", "--older-than", "90d")
        assert code == 0
        assert out.strip()
        assert await _stored(database_url) == (None, None)

        late = await client.post(
            URL, content=body, headers=signed_headers(body, webhook_id=headers["webhook-id"])
        )
        assert late.status_code == 200
        assert late.json()["duplicate"] is True
        await asyncio.sleep(0.3)
        assert len(sink.messages) == 1

    async def test_a_bad_horizon_is_refused_with_one_line(
        self,
        database_url: str,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        code, _, err = await cli(capsys, monkeypatch, database_url, "purge", "--older-than", "soon")
        assert code == 2
        assert "90d" in err
