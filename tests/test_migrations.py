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
