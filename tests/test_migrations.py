"""The Alembic chain builds exactly the models' schema, and goes down and up again."""

from __future__ import annotations

import uuid
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.db import Base, migrations_dir, run_migrations
from tests.pgserver import PgServer


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["sqlalchemy.url"] = url
    return config


async def _diff(url: str) -> list[Any]:
    engine = create_async_engine(url)

    def compare(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))

    async with engine.connect() as conn:
        diff = await conn.run_sync(compare)
    await engine.dispose()
    return diff


async def _tables(url: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_async_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    return names - {"alembic_version"}


class TestMigrations:
    async def test_upgrade_head_on_empty_postgresql_matches_the_models(self, pg: PgServer) -> None:
        url = pg.create_database(f"mig_{uuid.uuid4().hex[:8]}")
        run_migrations(url)
        assert await _diff(url) == []

    async def test_downgrade_to_base_and_upgrade_again(self, pg: PgServer) -> None:
        url = pg.create_database(f"mig_{uuid.uuid4().hex[:8]}")
        run_migrations(url)
        command.downgrade(_config(url), "base")
        assert await _tables(url) == set()
        run_migrations(url)
        assert await _diff(url) == []

    async def test_the_same_chain_runs_on_sqlite(self, tmp_path: Any) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        run_migrations(url)
        assert await _tables(url) == set(Base.metadata.tables)
        command.downgrade(_config(url), "base")
        assert await _tables(url) == set()

    async def test_an_emails_text_is_stored_uncompressed_on_postgresql(self, pg: PgServer) -> None:
        """0004: rows up to 8 KB are not TOAST-compressed (CPU on every send), after 0003 they
        were; a long text still is."""
        from sqlalchemy import text

        url = pg.create_database(f"mig_{uuid.uuid4().hex[:8]}")

        async def compression(body: str) -> str | None:
            engine = create_async_engine(url)
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM notifications"))
                await conn.execute(text("DELETE FROM cancellations"))
                cid, nid = uuid.uuid4(), uuid.uuid4()
                await conn.execute(
                    text(
                        "INSERT INTO cancellations (id, source, event_id, order_id, reason,"
                        " reference, occurred_at, received_at)"
                        " VALUES (:id, 'test', 'e', 'o', 'other', :ref, now(), now())"
                    ),
                    {"id": cid, "ref": cid.hex[:20]},
                )
                await conn.execute(
                    text(
                        "INSERT INTO notifications (id, cancellation_id, kind, recipient, status,"
                        " attempts, next_attempt_at, message_id, send_by, created_at, updated_at,"
                        " body_text) VALUES (:id, :cid, 'k', 'a@b.c', 'sent', 1, now(), :mid,"
                        " now(), now(), now(), :body)"
                    ),
                    {"id": nid, "cid": cid, "mid": f"<{nid}@t>", "body": body},
                )
                found = await conn.scalar(
                    text("SELECT pg_column_compression(body_text) FROM notifications")
                )
            await engine.dispose()
            return None if found is None else str(found)

        email_text = "Your order #1001 has been cancelled. We are refunding 129,90 €.\n" * 33
        run_migrations(url)
        assert await compression(email_text) is None
        assert await compression(email_text * 5) == "pglz"  # 10 KB: compressed as ever
        command.downgrade(_config(url), "0003_beyond")
        assert await compression(email_text) == "pglz"
