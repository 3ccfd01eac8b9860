"""The PostgreSQL store's statements: named parameters become asyncpg's numbered ones."""

from __future__ import annotations

from collections.abc import Callable

from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from cancelnotify.store import Statement
from tests.conftest import encode, running_client, signed_headers
from tests.pgserver import free_port

URL = "/v1/webhooks/order-cancelled"


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    s = Statement("SELECT :a, CAST(:b AS text), :a WHERE x = :c")
    assert s.sql == "SELECT $1, CAST($2 AS text), $1 WHERE x = $3"
    assert s.args({"c": 3, "b": "two", "a": 1}) == [1, "two", 3]


def test_casts_and_clock_times_are_not_parameters() -> None:
    s = Statement("SELECT now()::date, '10:30' AS t, :when")
    assert s.sql == "SELECT now()::date, '10:30' AS t, $1"


class TestStartUp:
    async def test_a_database_down_at_start_up_does_not_stop_the_replica(
        self, make_settings: Callable[..., Settings]
    ) -> None:
        # The hot path's pool connects on first use: a replica can start while PostgreSQL is
        # away, report it, and refuse webhooks with 503 (the sender retries).
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"  # refused
        async with running_client(make_settings(database_url=url)) as client:
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["database"].startswith("error")
            body = encode(sample_event())
            r = await client.post(URL, content=body, headers=signed_headers(body))
            assert r.status_code == 503  # nothing stored, the sender retries
