"""The PostgreSQL store's statements: named parameters become asyncpg's numbered ones."""

from __future__ import annotations

import socket
from collections.abc import Callable

import asyncpg
import pytest

from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from cancelnotify.store import Statement
from tests.conftest import encode, running_client, signed_headers

URL = "/v1/webhooks/order-cancelled"


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    s = Statement("SELECT :a, CAST(:b AS text), :a WHERE x = :c")
    assert s.sql == "SELECT $1, CAST($2 AS text), $1 WHERE x = $3"
    assert s.args({"c": 3, "b": "two", "a": 1}) == [1, "two", 3]


def test_casts_and_clock_times_are_not_parameters() -> None:
    s = Statement("SELECT now()::date, '10:30' AS t, :when")
    assert s.sql == "SELECT now()::date, '10:30' AS t, $1"


class TestPool:
    """The hot path's connections are open when the replica starts, not opened by a storm."""

    async def test_the_pool_is_open_before_the_first_webhook(
        self, make_settings: Callable[..., Settings], pg_url: str
    ) -> None:
        settings = make_settings(database_url=pg_url, database_pool_size=4)
        dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")

        async def connections() -> int:
            probe = await asyncpg.connect(dsn)
            try:
                n = await probe.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await probe.close()
            return int(n)

        before = await connections()
        async with running_client(settings) as client:
            assert await connections() - before >= 4  # the store's pool, before any request
            body = encode(sample_event())
            r = await client.post(URL, content=body, headers=signed_headers(body))
            assert r.status_code == 202, r.text

    async def test_a_database_down_at_start_up_does_not_stop_the_replica(
        self, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
    ) -> None:
        with socket.socket() as s:  # a port with nothing listening: connections are refused
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nowhere"
        async with running_client(make_settings(database_url=url)) as client:
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["database"].startswith("error")
            body = encode(sample_event())
            r = await client.post(URL, content=body, headers=signed_headers(body))
            assert r.status_code == 503  # nothing stored, the sender retries
        assert "database unreachable at start-up" in caplog.text
