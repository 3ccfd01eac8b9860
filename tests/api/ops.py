"""Helpers for the ops API tests: post signed webhooks, wait for a state, auth headers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cancelnotify.samples import sample_event
from tests.conftest import ADMIN_KEY, READ_KEY, encode, signed_headers

WEBHOOK = "/v1/webhooks/order-cancelled"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
READ = {"authorization": f"Bearer {READ_KEY}"}


async def post_event(
    client: httpx.AsyncClient,
    request_id: str | None = None,
    clock: ManualClock | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """POST a freshly signed canonical event (signed at the clock's time); return the 202 body."""
    body = encode(sample_event(**changes))
    headers = signed_headers(body, timestamp=int(clock().timestamp()) if clock else None)
    if request_id:
        headers["x-request-id"] = request_id
    r = await client.post(WEBHOOK, content=body, headers=headers)
    assert r.status_code == 202, r.text
    data: dict[str, Any] = r.json()
    return data


async def wait_status(
    client: httpx.AsyncClient, nid: str, *statuses: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/v1/notifications/{nid}", headers=ADMIN)
        body: dict[str, Any] = r.json()
        if body.get("status") in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{nid} stayed {body.get('status')}, wanted {statuses}")
        await asyncio.sleep(0.02)


class ManualClock:
    """A clock the test moves; starts now (webhook signatures are checked against it)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"]
    return body
