"""Micro-benchmark of the ingest write, same run: the PostgreSQL store vs a SQLAlchemy session.

    .venv/bin/python -m benchmarks.ingest_pair

`PgStore` writes the row pair as one autocommit statement on a raw asyncpg pool (what the
service runs on PostgreSQL); `SessionStore` runs BEGIN, the two Core INSERTs and COMMIT in an
AsyncSession (what it ran before, and still runs on SQLite). Both go through `services.ingest`.
The variants alternate in rounds on one PostgreSQL; it prints the median rate of each, the ratio,
and this process's CPU per write (the machine is shared; interleaving keeps the comparison fair).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

from tests.pgserver import PgServer

from cancelnotify.db import create_engine, create_sessionmaker, run_migrations
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.ingest import ingest
from cancelnotify.settings import Settings
from cancelnotify.store import PgStore, SessionStore, Store


async def main(rounds: int = 6, per_round: int = 500, concurrency: int = 8) -> None:
    pg = PgServer()
    pg.start()
    try:
        url = pg.create_database("pair")
        run_migrations(url)
        settings = Settings(_env_file=None, database_url=url)
        engine = create_engine(settings)
        stores: dict[str, Store] = {
            "asyncpg": await PgStore.open(engine, settings),
            "session": SessionStore(create_sessionmaker(engine)),
        }
        rates: dict[str, list[float]] = {name: [] for name in stores}
        cpu: dict[str, list[float]] = {name: [] for name in stores}
        counter = 0

        async def run(name: str) -> tuple[float, float]:
            nonlocal counter
            events = []
            for _ in range(per_round):
                counter += 1
                events.append(CancellationEventV1.model_validate(sample_event(order_id=counter)))
            sem = asyncio.Semaphore(concurrency)

            async def one(event: CancellationEventV1) -> None:
                async with sem:
                    await ingest(
                        stores[name],
                        event,
                        source="bench",
                        webhook_id=None,
                        payload={},
                        settings=settings,
                        now=datetime.now(UTC),
                    )

            start, cpu0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one(e) for e in events))
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu0
            return per_round / seconds, 1000 * cpu_seconds / per_round

        for name in stores:  # warm-up: connections, prepared statements
            await run(name)
        for _ in range(rounds):
            for name in stores:
                rate, ms = await run(name)
                rates[name].append(rate)
                cpu[name].append(ms)
        for store in stores.values():
            await store.close()
        await engine.dispose()
        fast, slow = statistics.median(rates["asyncpg"]), statistics.median(rates["session"])
        print(f"ingest write, median of {rounds} rounds x {per_round} (concurrency {concurrency}):")
        for name, label in (("asyncpg", "PgStore, one statement"), ("session", "AsyncSession")):
            print(
                f"  {label:24}: {statistics.median(rates[name]):7.0f}/s, "
                f"{statistics.median(cpu[name]):.2f} ms CPU per write (this process)"
            )
        print(f"  ratio                   : {fast / slow:.2f}x")
    finally:
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
