"""The ops list queries use indexes on PostgreSQL (EXPLAIN over a table of 20,000 rows)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cancelnotify.db import run_migrations
from cancelnotify.repository import NotificationQuery, notification_list_statement
from tests.pgserver import PgServer

FILL = """
INSERT INTO cancellations (id, source, event_id, order_id, order_number, reason, reference,
                           occurred_at, received_at)
SELECT md5('c' || g)::uuid, 'canonical', 'evt_' || g, (100000 + g)::text, '#' || g,
       (ARRAY['out_of_stock', 'other', 'payment_declined'])[1 + g % 3], 'CX-' || g,
       now() - g * interval '1 minute', now() - g * interval '1 minute'
FROM generate_series(1, 20000) g;
INSERT INTO notifications (id, cancellation_id, kind, dedupe_key, recipient, status, attempts,
                           next_attempt_at, message_id, send_by, created_at, updated_at)
SELECT md5('n' || g)::uuid, md5('c' || g)::uuid, 'order_cancelled', 'k' || g,
       'customer' || (g % 5000) || '@example.com',
       (ARRAY['sent', 'sent', 'sent', 'sent', 'failed', 'queued'])[1 + g % 6], 1,
       now(), '<' || g || '@shop.example>', now() + interval '1 day',
       now() - g * interval '1 minute', now()
FROM generate_series(1, 20000) g;
ANALYZE;
"""


@pytest.fixture(scope="module")
async def engine(pg: PgServer) -> AsyncIterator[AsyncEngine]:
    url = pg.create_database(f"plan_{uuid.uuid4().hex[:8]}")
    run_migrations(url)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for statement in FILL.split(";"):
            if statement.strip():
                await conn.execute(text(statement))
    yield engine
    await engine.dispose()


async def plan(engine: AsyncEngine, query: NotificationQuery, after: Any = None) -> str:
    stmt = notification_list_statement(query, after=after, limit=51)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    async with engine.connect() as conn:
        rows = (await conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}"))).scalar_one()
    return " > ".join(nodes((rows if isinstance(rows, list) else json.loads(rows))[0]["Plan"]))


def nodes(node: dict[str, Any], *, conditions: bool = True) -> list[str]:
    """An EXPLAIN plan's nodes, depth first: type, index or table, and the index condition."""
    where = node.get("Index Name", node.get("Relation Name", ""))
    cond = f" [{node['Index Cond']}]" if conditions and "Index Cond" in node else ""
    found = [f"{node['Node Type']}:{where}{cond}"]
    for child in node.get("Plans", []):
        found += nodes(child, conditions=conditions)
    return found


CASES = {
    "newest first": (NotificationQuery(), "ix_notifications_created_at_id"),
    "by status": (NotificationQuery(status="failed"), "ix_notifications_status_created_at_id"),
    "by recipient": (
        NotificationQuery(recipient="customer42@example.com"),
        "ix_notifications_recipient_created_at_id",
    ),
    "by order id": (NotificationQuery(order_id="100042"), "ix_cancellations_order_id"),
    "by cancellation": (
        NotificationQuery(cancellation_ids=(uuid.uuid4(),)),
        "ix_notifications_cancellation_id",
    ),
}


class TestQueryPlans:
    @pytest.mark.parametrize("case", list(CASES))
    async def test_list_filter_walks_an_index(self, engine: AsyncEngine, case: str) -> None:
        query, index = CASES[case]
        shape = await plan(engine, query)
        print(f"{case}: {shape}")  # noqa: T201 - shown with -s, recorded in docs/ops-api.md
        assert index in shape
        assert "Seq Scan:notifications" not in shape
        assert "Sort" not in shape.split(" > ")[1:2]

    async def test_next_page_seeks_instead_of_scanning(self, engine: AsyncEngine) -> None:
        after = (datetime.now(UTC) - timedelta(days=7), uuid.UUID(int=0))
        shape = await plan(engine, NotificationQuery(status="failed"), after=after)
        print(f"page 2 by status: {shape}")  # noqa: T201
        # The cursor is an index condition (a seek), not a filter over rows already read.
        assert "Index Scan:ix_notifications_" in shape
        assert "ROW(created_at, id) < ROW(" in shape
        assert "Seq Scan" not in shape
        assert "Sort" not in shape


async def test_outcomes_recorded_together_find_their_rows_by_primary_key(
    engine: AsyncEngine,
) -> None:
    # The group-commit statement (store._RECORD_MANY) joins its unnested arrays to
    # notifications: with the generic plan asyncpg ends up using, that must stay an index
    # lookup, never a scan of the table.
    from cancelnotify.store import _RECORD_MANY

    async with engine.connect() as conn:
        await conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        now = datetime.now(UTC)
        ids = [uuid.uuid4() for _ in range(8)]
        column: dict[str, Any] = {"attempt_id_list": ids, "id_list": ids}
        column |= {"started_at_list": [now] * 8, "duration_ms_list": [5] * 8}
        column |= {"number_list": [1] * 8, "smtp_code_list": [250] * 8}
        column |= {"next_attempt_at_list": [None] * 8, "sent_at_list": [now] * 8}
        for name in ("outcome", "smtp_text", "status", "last_error", "failure_reason"):
            column[f"{name}_list"] = ["sent"] * 8
        column |= {"subject_list": ["s"] * 8, "body_text_list": ["b"] * 8}
        column |= {"worker": "w", "now": now}
        explain = "EXPLAIN (FORMAT JSON) " + _RECORD_MANY.sql
        found = await pg.fetchval(explain, *_RECORD_MANY.args(column))
    plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
    shape = nodes(plan, conditions=False)
    assert "Seq Scan:notifications" not in shape
    # By primary key, or (the plan here) by the status index: only `sending` rows can match,
    # and there are at most as many as the replicas' claims in flight.
    assert any(
        n.startswith(("Index Scan:notifications_pkey", "Index Scan:ix_notifications_status"))
        or n == "Bitmap Index Scan:notifications_pkey"
        for n in shape
    ), shape


async def test_a_claim_reads_as_many_due_rows_as_it_takes_however_long_the_queue(
    engine: AsyncEngine,
) -> None:
    # store._CLAIM with 3,333 rows queued and due: it must walk the due index in order and stop
    # after its limit, not collect the whole queue and sort it (a claim then costs as much as
    # the backlog is long: 31 ms at 100,000 queued instead of 0.6).
    from cancelnotify.store import _CLAIM

    now = datetime.now(UTC) + timedelta(seconds=1)
    params = {"now": now, "until": now + timedelta(seconds=30), "worker": "w", "limit": 16}
    params["exclude"] = [uuid.uuid4() for _ in range(48)]
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        for mode in ("force_custom_plan", "force_generic_plan"):
            await pg.execute(f"SET plan_cache_mode = {mode}")
            claim = pg.transaction()  # EXPLAIN ANALYZE runs the claim: undone after it
            await claim.start()
            try:
                found = await pg.fetchval(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + _CLAIM.sql, *_CLAIM.args(params)
                )
                claimed = await pg.fetchval(
                    "SELECT count(*) FROM notifications WHERE status = 'sending'"
                )
            finally:
                await claim.rollback()
            plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
            read = rows_read(plan, "notifications")
            assert claimed == 16, mode
            assert sum(rows for _, rows in read) <= 3 * 16, (mode, read)


def rows_read(node: dict[str, Any], relation: str) -> list[tuple[str, int]]:
    """Each scan of `relation` in an EXPLAIN ANALYZE plan, with the rows it returned."""
    found = []
    if node.get("Relation Name") == relation and "Scan" in node["Node Type"]:
        found.append((node["Node Type"], node["Actual Rows"] * node["Actual Loops"]))
    for child in node.get("Plans", []):
        found += rows_read(child, relation)
    return found
