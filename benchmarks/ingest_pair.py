"""Micro-benchmark of the ingest write: one CTE statement vs two Core statements, same run.

    .venv/bin/python -m benchmarks.ingest_pair

Alternates the two variants in rounds on one PostgreSQL and prints the median rate of each and
their ratio (the machine is shared; interleaving keeps the comparison fair).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from tests.pgserver import PgServer

from cancelnotify import repository
from cancelnotify.db import create_engine, create_sessionmaker, run_migrations
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.ingest import ingest
from cancelnotify.settings import Settings


async def _two_statements(
    session: AsyncSession, cancellation: dict[str, object], notification: dict[str, object]
) -> tuple[object, object]:
    cid = await repository.insert_cancellation(session, cancellation)
    if cid is None:
        return None, None
    return cid, await repository.insert_notification(
        session, {**notification, "cancellation_id": cid}
    )


async def main(rounds: int = 6, per_round: int = 500, concurrency: int = 8) -> None:
    pg = PgServer()
    pg.start()
    try:
        url = pg.create_database("pair")
        run_migrations(url)
        settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        one_statement = repository.insert_pair
        rates: dict[str, list[float]] = {"cte": [], "two": []}
        counter = 0

        async def run(variant: str) -> float:
            nonlocal counter
            repository.insert_pair = one_statement if variant == "cte" else _two_statements  # type: ignore[assignment]
            events = []
            for _ in range(per_round):
                counter += 1
                events.append(CancellationEventV1.model_validate(sample_event(order_id=counter)))
            sem = asyncio.Semaphore(concurrency)

            async def one(event: CancellationEventV1) -> None:
                async with sem, sessionmaker.begin() as session:
                    await ingest(
                        session,
                        event,
                        source="bench",
                        webhook_id=None,
                        payload={},
                        settings=settings,
                        now=datetime.now(UTC),
                    )

            start = time.perf_counter()
            await asyncio.gather(*(one(e) for e in events))
            return per_round / (time.perf_counter() - start)

        await run("cte")
        for _ in range(rounds):
            for variant in ("cte", "two"):
                rates[variant].append(await run(variant))
        repository.insert_pair = one_statement  # type: ignore[assignment]
        await engine.dispose()
        cte, two = statistics.median(rates["cte"]), statistics.median(rates["two"])
        print(f"ingest write, median of {rounds} rounds x {per_round} (concurrency {concurrency}):")
        print(f"  one CTE statement : {cte:7.0f}/s")
        print(f"  two statements    : {two:7.0f}/s")
        print(f"  ratio             : {cte / two:.2f}x")
    finally:
        pg.destroy()


if __name__ == "__main__":
    asyncio.run(main())
