"""API keys end to end: created, listed and revoked with the CLI, enforced by the API."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.cli import main
from cancelnotify.models import ApiKey
from cancelnotify.settings import Settings
from tests.api.ops import ADMIN, READ, assert_problem, post_event, wait_status

ROUTE_CALLS = [
    ("GET", "/v1/notifications"),
    ("GET", "/v1/notifications/{id}"),
    ("POST", "/v1/notifications/{id}/resend"),
    ("GET", "/v1/cancellations?order_id=1001"),
    ("GET", "/v1/cancellations/{id}"),
    ("GET", "/v1/stats"),
    ("POST", "/v1/cancellations/{id}/refund-events"),
    ("GET", "/v1/callbacks"),
    ("POST", "/v1/callbacks/{id}/complete"),
]


async def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    *argv: str,
) -> tuple[int, str, str]:
    """Run `cancelnotify ...` as an operator would (its own event loop, settings from env)."""
    monkeypatch.setenv("CANCELNOTIFY_DATABASE_URL", database_url)
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TestCli:
    async def test_create_prints_the_key_once_and_stores_only_its_hash(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        database_url: str,
    ) -> None:
        code, out, err = await cli(
            capsys,
            monkeypatch,
            database_url,
            "apikey",
            "create",
            "--name",
            "oncall",
            "--scope",
            "read",
        )
        assert code == 0
        key = out.strip()
        assert key.startswith("cn_")
        assert len(key) > 30
        assert "not shown again" in err
        code, listing, _ = await cli(capsys, monkeypatch, database_url, "apikey", "list")
        assert code == 0
        assert "oncall" in listing
        assert key not in listing
        assert key[:12] in listing  # the prefix identifies it
        engine = create_async_engine(database_url)
        async with engine.connect() as conn:
            stored = (
                await conn.execute(select(ApiKey.key_hash).where(ApiKey.name == "oncall"))
            ).scalar_one()
        await engine.dispose()
        assert stored == hashlib.sha256(key.encode()).hexdigest()

    async def test_keys_work_by_scope_and_stop_working_once_revoked(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        database_url: str,
        client: httpx.AsyncClient,
    ) -> None:
        _, out, _ = await cli(
            capsys,
            monkeypatch,
            database_url,
            "apikey",
            "create",
            "--name",
            "viewer",
            "--scope",
            "read",
        )
        read_key = out.strip()
        _, out, _ = await cli(
            capsys,
            monkeypatch,
            database_url,
            "apikey",
            "create",
            "--name",
            "boss",
            "--scope",
            "admin",
        )
        admin_key = out.strip()
        nid = (await post_event(client))["notification_id"]
        await wait_status(client, nid, "sent")
        as_read = {"authorization": f"Bearer {read_key}"}
        as_admin = {"authorization": f"Bearer {admin_key}"}

        assert (await client.get("/v1/notifications", headers=as_read)).status_code == 200
        resend = f"/v1/notifications/{nid}/resend"
        assert_problem(await client.post(resend, json={"reason": "x"}, headers=as_read), 403)
        ok = await client.post(resend, json={"reason": "x"}, headers=as_admin)
        assert ok.status_code == 201
        detail = (await client.get(f"/v1/notifications/{nid}", headers=ADMIN)).json()
        assert detail["audit"][0]["api_key_name"] == "boss"

        code, out, _ = await cli(
            capsys, monkeypatch, database_url, "apikey", "revoke", read_key[:12]
        )
        assert (code, out.strip()) == (0, "revoked")
        r = await client.get("/v1/notifications", headers=as_read)
        assert_problem(r, 401)
        code, _, err = await cli(
            capsys, monkeypatch, database_url, "apikey", "revoke", read_key[:12]
        )
        assert code == 1
        assert "no active key" in err
        assert "revoked" in (await cli(capsys, monkeypatch, database_url, "apikey", "list"))[1]


class TestEnforced:
    def test_every_ops_route_is_covered_here(self, settings: Settings) -> None:
        from cancelnotify.app import create_app

        paths = create_app(settings).openapi()["paths"]
        ops = {
            (method.upper(), re.sub(r"\{\w+\}", "{id}", path))
            for path, item in paths.items()
            if path.startswith("/v1/") and not path.startswith("/v1/webhooks/")
            for method in item
        }
        assert ops == {(m, p.split("?")[0]) for m, p in ROUTE_CALLS}

    @pytest.mark.parametrize(("method", "path"), ROUTE_CALLS)
    @pytest.mark.parametrize(
        "authorization",
        [None, "Bearer", "Bearer cn_wrong", "Basic Zm9vOmJhcg==", "cn_test_read_key"],
    )
    async def test_missing_or_bad_key_is_401_problem(
        self, client: httpx.AsyncClient, method: str, path: str, authorization: str | None
    ) -> None:
        headers = {"authorization": authorization} if authorization else {}
        r = await client.request(
            method, path.format(id=uuid.uuid4()), headers=headers, json={"reason": "x"}
        )
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(("method", "path"), ROUTE_CALLS)
    async def test_read_key_passes_except_on_admin_routes(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        r = await client.request(
            method, path.format(id=uuid.uuid4()), headers=READ, json={"reason": "x"}
        )
        if method == "POST":
            assert_problem(r, 403)
        else:
            assert r.status_code in (200, 404), r.text

    async def test_webhooks_health_and_metrics_need_no_key(self, client: httpx.AsyncClient) -> None:
        await post_event(client)
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
