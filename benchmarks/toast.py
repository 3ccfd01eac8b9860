"""PostgreSQL CPU per row with and without TOAST compression of a 2 KB email text (migration 0004).

    .venv/bin/python -m benchmarks.toast

Two copies of a notification-like table on one private PostgreSQL, one with PostgreSQL's
default TOAST threshold (about 2 KB), one with `toast_tuple_target = 8160` as migration 0004
sets. Per row, what the hot path does to a notification and its cancellation's payload: insert
with the payload (JSON, as the sample event), read the payload back as text (a claim), update
with the rendered text part (a send's outcome). The variants alternate in rounds; it prints the
backend's CPU per row (median of the rounds) and each table's size.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import uuid

import asyncpg
from tests.pgserver import PgServer

from benchmarks.stages import sample_steps
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings

TABLES = {"default": "", "toast_tuple_target = 8160": " WITH (toast_tuple_target = 8160)"}


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(rounds: int = 4, rows: int = 3000) -> None:
    settings = Settings(_env_file=None, database_url="sqlite+aiosqlite://")
    text = sample_steps(settings, locale="de").render().text
    payload = json.dumps(sample_event(), default=str)
    pg = PgServer()
    pg.start()
    try:
        conn = await asyncpg.connect(pg.url("postgres").replace("+asyncpg", ""))
        names = {}
        for index, (variant, options) in enumerate(TABLES.items()):
            names[variant] = f"n_{index}"
            await conn.execute(
                f"CREATE TABLE n_{index} (id uuid PRIMARY KEY, status text, body_text text,"
                f" payload jsonb){options}"
            )
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        cpu: dict[str, list[float]] = {variant: [] for variant in TABLES}
        for number in range(rounds):
            order = list(TABLES) if number % 2 == 0 else list(reversed(TABLES))
            for variant in order:
                table = names[variant]  # our own names, not input
                insert = f"INSERT INTO {table} (id, status, payload) VALUES ($1, 'queued', $2)"  # noqa: S608
                read = f"SELECT payload::text FROM {table} WHERE id = $1"  # noqa: S608
                update = f"UPDATE {table} SET status = 'sent', body_text = $2 WHERE id = $1"  # noqa: S608
                ids = [uuid.uuid4() for _ in range(rows)]
                start = backend_cpu(pid)
                for row in ids:
                    await conn.execute(insert, row, payload)
                for row in ids:
                    await conn.fetchval(read, row)
                for row in ids:
                    await conn.execute(update, row, text)
                cpu[variant].append((backend_cpu(pid) - start) / rows * 1e6)
        print(f"payload {len(payload)} bytes, text part {len(text.encode())} bytes")
        for variant, table in names.items():
            size = await conn.fetchval(f"SELECT pg_size_pretty(pg_total_relation_size('{table}'))")
            samples = ", ".join(f"{us:.0f}" for us in cpu[variant])
            print(
                f"{variant:>26}: {statistics.median(cpu[variant]):.0f} µs of PostgreSQL CPU per"
                f" row written, read and updated ({samples}); table {size}"
            )
        await conn.close()
    finally:
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
