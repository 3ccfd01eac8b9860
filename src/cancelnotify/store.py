"""The hot-path writes of a cancellation storm: ingest, claim, heartbeat, record, release.

Two implementations behind one interface:

- `PgStore` (PostgreSQL) runs each operation as one SQL statement on a raw asyncpg pool, in
  autocommit: a single statement is its own transaction, so the row pair of an ingest, a claim
  (FOR UPDATE SKIP LOCKED + UPDATE) and an attempt record (INSERT + fenced UPDATE) are still
  atomic, at one round trip each instead of BEGIN, statement, COMMIT. Profiled: the SQLAlchemy
  session around those statements cost more CPU than the statements themselves.
- `SessionStore` (SQLite for `cancelnotify dev`, and any other SQLAlchemy URL) runs the Core
  statements of `repository` in one session transaction per operation.

Everything else (the ops API, stats, preview) keeps using SQLAlchemy sessions.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cancelnotify import repository
from cancelnotify.models import CallbackTask, Cancellation, Notification
from cancelnotify.repository import Attempt, Claim
from cancelnotify.services import callbacks
from cancelnotify.settings import Settings
from cancelnotify.states import Status


@dataclass(frozen=True, slots=True)
class Ingested:
    """What an ingest write found: new rows, or the ones an earlier delivery stored."""

    cancellation_id: uuid.UUID
    notification_id: uuid.UUID
    status: str
    new_cancellation: bool  # False: this event (event id or webhook id) was seen before
    new_notification: bool  # False: the order already has its email (another event, same order)


class Store:
    """The interface; see the module docstring for the two implementations."""

    async def ingest(
        self,
        cancellation: dict[str, Any],
        notification: dict[str, Any],
        callback: dict[str, Any] | None,
        *,
        payload_text: str | None = None,
    ) -> Ingested:
        """Insert the pair (and the call-back task, if any) once; else return what is stored.

        `payload_text` is the cancellation's payload as JSON text, if the caller has it; the
        payload itself (`cancellation["payload"]`) may then be None.
        """
        raise NotImplementedError

    async def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease: float,
        limit: int,
        exclude: Collection[uuid.UUID],
    ) -> list[Claim]:
        raise NotImplementedError

    async def extend(
        self, claims: Collection[Claim], *, worker: str, until: datetime
    ) -> set[uuid.UUID]:
        raise NotImplementedError

    async def record(
        self, outcomes: Sequence[tuple[Claim, Attempt]], *, worker: str, now: datetime
    ) -> set[uuid.UUID]:
        """Write each attempt and its state change in one transaction; return the ids whose
        claim this worker still owned (the others were rescued: only their attempt row lands)."""
        raise NotImplementedError

    async def release(self, ids: list[uuid.UUID], *, worker: str, now: datetime) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


# -- SQLAlchemy sessions (SQLite) -----------------------------------------------------------
async def ingest_in_session(
    session: AsyncSession,
    cancellation: dict[str, Any],
    notification: dict[str, Any],
    callback: dict[str, Any] | None,
) -> Ingested:
    """The ingest write inside the caller's transaction (several statements)."""
    cancellation_id, notification_id = await repository.insert_pair(
        session, cancellation, notification
    )
    if cancellation_id is None:
        existing = await repository.find_cancellation_id(
            session, cancellation["source"], cancellation["event_id"], cancellation["webhook_id"]
        )
        found = await repository.find_notification_by_key(session, notification["dedupe_key"])
        if existing is None or found is None:  # pragma: no cover - constraints say otherwise
            raise RuntimeError("duplicate cancellation without its rows")
        return Ingested(existing, found[0], found[1], False, False)
    if callback is not None:
        await repository.insert_callback(session, {**callback, "cancellation_id": cancellation_id})
    if notification_id is None:
        found = await repository.find_notification_by_key(session, notification["dedupe_key"])
        if found is None:  # pragma: no cover
            raise RuntimeError("notification conflict without a row")
        return Ingested(cancellation_id, found[0], found[1], True, False)
    return Ingested(cancellation_id, notification_id, notification["status"], True, True)


class SessionStore(Store):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def ingest(
        self,
        cancellation: dict[str, Any],
        notification: dict[str, Any],
        callback: dict[str, Any] | None,
        *,
        payload_text: str | None = None,
    ) -> Ingested:
        if cancellation["payload"] is None and payload_text is not None:
            cancellation = {**cancellation, "payload": json.loads(payload_text)}
        async with self.sessionmaker.begin() as session:
            return await ingest_in_session(session, cancellation, notification, callback)

    async def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease: float,
        limit: int,
        exclude: Collection[uuid.UUID],
    ) -> list[Claim]:
        async with self.sessionmaker.begin() as session:
            return await repository.claim_due(
                session, worker=worker, now=now, lease=lease, limit=limit, exclude=exclude
            )

    async def extend(
        self, claims: Collection[Claim], *, worker: str, until: datetime
    ) -> set[uuid.UUID]:
        async with self.sessionmaker.begin() as session:
            return await repository.extend_leases(session, claims, worker=worker, until=until)

    async def record(
        self, outcomes: Sequence[tuple[Claim, Attempt]], *, worker: str, now: datetime
    ) -> set[uuid.UUID]:
        async with self.sessionmaker.begin() as session:
            return {
                claim.id
                for claim, attempt in outcomes
                if await repository.record_attempt(session, claim, attempt, worker=worker, now=now)
            }

    async def release(self, ids: list[uuid.UUID], *, worker: str, now: datetime) -> None:
        async with self.sessionmaker.begin() as session:
            await repository.release(session, ids, worker=worker, now=now)


# -- raw asyncpg (PostgreSQL) ---------------------------------------------------------------
_cancellations = cast(Table, Cancellation.__table__)
_notifications = cast(Table, Notification.__table__)
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Statement:
    """A statement written with :named parameters, run with asyncpg's $n ones."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.names:
                self.names.append(name)
            return f"${self.names.index(name) + 1}"

        self.sql = _NAMED.sub(number, sql)

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


_CANCELLATION_COLUMNS = [
    "id",
    "source",
    "event_id",
    "webhook_id",
    "order_id",
    "order_number",
    "reason",
    "reference",
    "payload",
    "occurred_at",
    "received_at",
]
_NOTIFICATION_COLUMNS = [
    "id",
    "kind",
    "dedupe_key",
    "recipient",
    "locale",
    "status",
    "attempts",
    "next_attempt_at",
    "locked_by",
    "locked_until",
    "message_id",
    "send_by",
    "request_id",
    "created_at",
    "updated_at",
]


def _pair_sql() -> str:
    """One INSERT ... RETURNING pair as a data-modifying CTE, typed from the table metadata."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]

    def params(prefix: str, table: Table, columns: list[str]) -> str:
        return ", ".join(
            f"CAST(:{prefix}_{c} AS {table.c[c].type.compile(dialect=dialect)})" for c in columns
        )

    c_cols, n_cols = ", ".join(_CANCELLATION_COLUMNS), ", ".join(_NOTIFICATION_COLUMNS)
    # Identifiers come from our own table definitions, never from input: no injection here.
    return (
        f"WITH c AS (INSERT INTO cancellations ({c_cols}) "  # noqa: S608
        f"VALUES ({params('c', _cancellations, _CANCELLATION_COLUMNS)}) "
        "ON CONFLICT DO NOTHING RETURNING id), "
        f"n AS (INSERT INTO notifications (cancellation_id, {n_cols}) "
        f"SELECT c.id, {params('n', _notifications, _NOTIFICATION_COLUMNS)} FROM c "
        "ON CONFLICT DO NOTHING RETURNING id) "
        "SELECT (SELECT id FROM c) AS cancellation_id, (SELECT id FROM n) AS notification_id"
    )


_PAIR = Statement(_pair_sql())

# The claim in one statement: lock due rows (SKIP LOCKED), take them, and return them with their
# payload and failure count. Same conditions as `repository._due`; one round trip instead of
# four statements (profiled: the claim dominated the dispatcher's database time).
# Queued rows and expired leases are picked apart, each in its own partial index, and merged:
# written as one OR (as `repository._due` does) PostgreSQL combined both indexes in a bitmap and
# sorted every due row to return the first 16, so a claim cost as much as the queue was long
# (EXPLAIN ANALYZE, 200,000 rows sent: 0.8 / 4.1 / 31 ms with 1,000 / 15,000 / 100,000 queued,
# against 0.46 / 0.61 / 0.58 ms now; tests/test_query_plans.py). FOR UPDATE is not allowed in
# a UNION's branches, hence the two CTEs; a row one locks but the merge leaves out stays due.
_CLAIM = Statement(
    """
WITH queued AS (
  SELECT id, status AS old_status, next_attempt_at FROM notifications
  WHERE status IN ('queued', 'retrying') AND next_attempt_at <= :now
    AND NOT (id = ANY(CAST(:exclude AS uuid[])))
  ORDER BY next_attempt_at
  LIMIT :limit
  FOR UPDATE SKIP LOCKED
), expired AS (
  SELECT id, status AS old_status, next_attempt_at FROM notifications
  WHERE status = 'sending' AND locked_until < :now
    AND NOT (id = ANY(CAST(:exclude AS uuid[])))
  ORDER BY next_attempt_at
  LIMIT :limit
  FOR UPDATE SKIP LOCKED
), picked AS (
  SELECT id, old_status FROM (SELECT * FROM queued UNION ALL SELECT * FROM expired) AS due
  ORDER BY next_attempt_at
  LIMIT :limit
), claimed AS (
  UPDATE notifications AS n
  SET status = 'sending', locked_until = :until, locked_by = :worker,
      attempts = n.attempts + 1, updated_at = :now
  FROM picked WHERE n.id = picked.id
  RETURNING n.id, n.cancellation_id, n.kind, n.recipient, n.locale, n.message_id,
            n.attempts, n.send_by, n.request_id, n.created_at, picked.old_status
)
SELECT claimed.*, c.payload, c.reference,
       (SELECT count(*) FROM delivery_attempts AS a
        WHERE a.notification_id = claimed.id
          AND a.outcome IN ('transient', 'ambiguous')) AS failures
FROM claimed JOIN cancellations AS c ON c.id = claimed.cancellation_id
ORDER BY claimed.created_at
"""
)


# The attempt row and the fenced state change in one statement on PostgreSQL (one round trip).
_RECORD = Statement(
    """
WITH attempt AS (
  INSERT INTO delivery_attempts
    (id, notification_id, number, worker, started_at, duration_ms, outcome, smtp_code, smtp_text)
  VALUES (:attempt_id, :id, :number, :worker, :started_at, :duration_ms, :outcome,
          CAST(:smtp_code AS integer), CAST(:smtp_text AS text))
)
UPDATE notifications SET
  status = :status, locked_until = NULL, locked_by = NULL, updated_at = :now,
  last_error = CAST(:last_error AS text),
  failure_reason = CAST(:failure_reason AS varchar),
  next_attempt_at = COALESCE(CAST(:next_attempt_at AS timestamptz), next_attempt_at),
  sent_at = COALESCE(CAST(:sent_at AS timestamptz), sent_at),
  subject = COALESCE(CAST(:subject AS text), subject),
  body_text = CASE WHEN CAST(:subject AS text) IS NULL THEN body_text
                   ELSE CAST(:body_text AS text) END
WHERE id = :id AND locked_by = :worker AND attempts = :number AND status = 'sending'
RETURNING id
"""
)

# The same for several outcomes at once (group commit, see `dispatcher.Recorder`): one array per
# column, named after `_RECORD`'s parameter with `_list` (`_outcome_row`), unnested; each row is
# fenced on its own.
_RECORD_MANY = Statement(
    """
WITH input AS (
  SELECT * FROM unnest(
    CAST(:attempt_id_list AS uuid[]), CAST(:id_list AS uuid[]), CAST(:number_list AS integer[]),
    CAST(:started_at_list AS timestamptz[]), CAST(:duration_ms_list AS integer[]),
    CAST(:outcome_list AS text[]), CAST(:smtp_code_list AS integer[]),
    CAST(:smtp_text_list AS text[]), CAST(:status_list AS text[]),
    CAST(:last_error_list AS text[]), CAST(:failure_reason_list AS text[]),
    CAST(:next_attempt_at_list AS timestamptz[]), CAST(:sent_at_list AS timestamptz[]),
    CAST(:subject_list AS text[]), CAST(:body_text_list AS text[])
  ) AS i(attempt_id, id, number, started_at, duration_ms, outcome, smtp_code, smtp_text,
         status, last_error, failure_reason, next_attempt_at, sent_at, subject, body_text)
), attempt AS (
  INSERT INTO delivery_attempts
    (id, notification_id, number, worker, started_at, duration_ms, outcome, smtp_code, smtp_text)
  SELECT attempt_id, id, number, :worker, started_at, duration_ms, outcome, smtp_code, smtp_text
  FROM input
)
UPDATE notifications AS n SET
  status = i.status, locked_until = NULL, locked_by = NULL, updated_at = :now,
  last_error = i.last_error, failure_reason = i.failure_reason,
  next_attempt_at = COALESCE(i.next_attempt_at, n.next_attempt_at),
  sent_at = COALESCE(i.sent_at, n.sent_at),
  subject = COALESCE(i.subject, n.subject),
  body_text = CASE WHEN i.subject IS NULL THEN n.body_text ELSE i.body_text END
FROM input AS i
WHERE n.id = ANY(CAST(:id_list AS uuid[])) AND n.id = i.id
  AND n.locked_by = :worker AND n.attempts = i.number AND n.status = 'sending'
RETURNING n.id
"""
)


_EXISTING = Statement(
    """
SELECT (SELECT id FROM cancellations
        WHERE source = :source
          AND (event_id = :event_id OR webhook_id = CAST(:webhook_id AS varchar))
        LIMIT 1) AS cancellation_id,
       n.id AS notification_id, n.status
FROM notifications AS n WHERE n.dedupe_key = :dedupe_key
"""
)
_TASK_COLUMNS = ["cancellation_id", *callbacks.TASK_COLUMNS]
_CALLBACK = Statement(
    f"INSERT INTO {CallbackTask.__tablename__} ({', '.join(_TASK_COLUMNS)}) "  # noqa: S608 - our own names
    f"VALUES ({', '.join(':' + c for c in _TASK_COLUMNS)}) ON CONFLICT DO NOTHING"
)
_EXTEND = Statement(
    """
UPDATE notifications SET locked_until = :until
WHERE id = ANY(CAST(:ids AS uuid[])) AND locked_by = :worker AND status = 'sending'
RETURNING id, attempts
"""
)
_RELEASE = Statement(
    """
UPDATE notifications
SET status = 'queued', locked_until = NULL, locked_by = NULL, attempts = attempts - 1,
    next_attempt_at = :now, updated_at = :now
WHERE id = ANY(CAST(:ids AS uuid[])) AND locked_by = :worker AND status = 'sending'
"""
)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    """Our statements leave no session state (no SET, LISTEN, cursors or advisory locks), and
    asyncpg still rolls back a transaction left open. The default reset is a round trip
    (`RESET ALL; UNLISTEN *; ...`) on every release: a second statement per operation."""


# A dispatcher runs one claim, one group-commit write and one heartbeat at a time: three
# connections let them overlap (a release, at shutdown or for an abandoned send, waits for one).
DELIVERY_CONNECTIONS = 3


class PgStore(Store):
    """One statement per operation on raw asyncpg pools, outside SQLAlchemy.

    The dispatcher's statements (claim, record, extend, release) have a pool of their own: on
    the webhooks' pool they queued behind every webhook waiting for a connection, so under a
    storm of webhooks the sends waited for the database (see `DELIVERY_CONNECTIONS`).
    """

    def __init__(self, pool: asyncpg.Pool, delivery: asyncpg.Pool) -> None:
        self.pool = pool
        self.delivery = delivery

    @classmethod
    async def open(cls, engine: AsyncEngine, settings: Settings) -> PgStore:
        """The webhooks' pool and the sender's, with the engine's connection parameters; each
        connects on first use."""
        _, params = engine.dialect.create_connect_args(engine.url)
        params.pop("prepared_statement_cache_size", None)  # a SQLAlchemy-only option
        pools = [
            await asyncpg.create_pool(
                min_size=0,
                max_size=size,
                timeout=5,
                command_timeout=30,
                max_inactive_connection_lifetime=300,
                reset=_nothing_to_reset,
                **params,
            )
            for size in (settings.database_pool_size, DELIVERY_CONNECTIONS)
        ]
        return cls(*pools)

    async def close(self) -> None:
        await self.pool.close()
        await self.delivery.close()

    async def ingest(
        self,
        cancellation: dict[str, Any],
        notification: dict[str, Any],
        callback: dict[str, Any] | None,
        *,
        payload_text: str | None = None,
    ) -> Ingested:
        params = {f"c_{k}": v for k, v in cancellation.items()} | {
            f"n_{k}": v for k, v in notification.items()
        }
        params["c_payload"] = payload_text or _json(cancellation["payload"])
        async with self.pool.acquire() as conn:
            if callback is None:
                row = await conn.fetchrow(_PAIR.sql, *_PAIR.args(params))
            else:  # rare (a call-back rule matched): the task joins the pair's transaction
                async with conn.transaction():
                    row = await conn.fetchrow(_PAIR.sql, *_PAIR.args(params))
                    if row is not None and row["cancellation_id"] is not None:
                        task = {**callback, "cancellation_id": row["cancellation_id"]}
                        await conn.execute(_CALLBACK.sql, *_CALLBACK.args(task))
            assert row is not None  # noqa: S101 - the SELECT always returns one row
            cancellation_id, notification_id = row["cancellation_id"], row["notification_id"]
            if cancellation_id is not None and notification_id is not None:
                status = notification["status"]
                return Ingested(cancellation_id, notification_id, status, True, True)
            # A duplicate: the rows were committed by an earlier (or concurrent, now finished)
            # request; this is a new statement with a new snapshot, so it sees them.
            found = await conn.fetchrow(
                _EXISTING.sql,
                *_EXISTING.args(
                    {
                        "source": cancellation["source"],
                        "event_id": cancellation["event_id"],
                        "webhook_id": cancellation["webhook_id"],
                        "dedupe_key": notification["dedupe_key"],
                    }
                ),
            )
        if found is None or (cancellation_id is None and found["cancellation_id"] is None):
            raise RuntimeError("duplicate without its rows")  # pragma: no cover - constraints
        if cancellation_id is None:
            return Ingested(
                found["cancellation_id"], found["notification_id"], found["status"], False, False
            )
        return Ingested(cancellation_id, found["notification_id"], found["status"], True, False)

    async def claim(
        self,
        *,
        worker: str,
        now: datetime,
        lease: float,
        limit: int,
        exclude: Collection[uuid.UUID],
    ) -> list[Claim]:
        params = {
            "now": now,
            "until": now + timedelta(seconds=lease),
            "worker": worker,
            "limit": limit,
            "exclude": list(exclude),
        }
        rows = await self.delivery.fetch(_CLAIM.sql, *_CLAIM.args(params))
        return [
            repository.claim_from_row(
                r,
                rescued=r["old_status"] == Status.sending,
                payload=r["payload"],  # JSONB as text: validated straight from JSON
                reference=r["reference"],
                failures=r["failures"],
            )
            for r in rows
        ]

    async def extend(
        self, claims: Collection[Claim], *, worker: str, until: datetime
    ) -> set[uuid.UUID]:
        if not claims:
            return set()
        params = {"until": until, "ids": [c.id for c in claims], "worker": worker}
        numbers = {c.id: c.attempt for c in claims}
        rows = await self.delivery.fetch(_EXTEND.sql, *_EXTEND.args(params))
        return {r["id"] for r in rows if numbers.get(r["id"]) == r["attempts"]}

    async def record(
        self, outcomes: Sequence[tuple[Claim, Attempt]], *, worker: str, now: datetime
    ) -> set[uuid.UUID]:
        # One outcome (a trickle of sends) keeps the single-row statement, which finds its row by
        # primary key whatever the statistics say. Measured against always using `_RECORD_MANY`:
        # at 200/s side by side the same or a little cheaper (service 2.24-2.29 vs 2.29-2.30,
        # PostgreSQL 0.66-0.68 vs 0.70-0.76 ms per email, two runs of 4 rounds); alone with
        # 24,000 `sending` rows not yet analyzed, PostgreSQL 165 vs 407 us (the batch statement's
        # plan then walks the status index).
        if len(outcomes) != 1:
            return await self._record_many(outcomes, worker=worker, now=now)
        claim, attempt = outcomes[0]
        params = {**_outcome_row(claim, attempt, now), "worker": worker, "now": now}
        owned = await self.delivery.fetchval(_RECORD.sql, *_RECORD.args(params))
        return set() if owned is None else {owned}

    async def _record_many(
        self, outcomes: Sequence[tuple[Claim, Attempt]], *, worker: str, now: datetime
    ) -> set[uuid.UUID]:
        if not outcomes:
            return set()
        rows = [_outcome_row(claim, attempt, now) for claim, attempt in outcomes]
        params: dict[str, Any] = {"worker": worker, "now": now}
        params |= {f"{name}_list": [row[name] for row in rows] for name in rows[0]}
        owned = await self.delivery.fetch(_RECORD_MANY.sql, *_RECORD_MANY.args(params))
        return {r["id"] for r in owned}

    async def release(self, ids: list[uuid.UUID], *, worker: str, now: datetime) -> None:
        if ids:
            params = {"ids": ids, "worker": worker, "now": now}
            await self.delivery.execute(_RELEASE.sql, *_RELEASE.args(params))


def _outcome_row(claim: Claim, attempt: Attempt, now: datetime) -> dict[str, Any]:
    """One outcome's values, by `_RECORD`'s parameter names (`_RECORD_MANY` takes them as lists)."""
    return {
        "attempt_id": uuid.uuid4(),
        "id": claim.id,
        "number": claim.attempt,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "outcome": str(attempt.outcome),
        "smtp_code": attempt.smtp_code,
        "smtp_text": attempt.smtp_text,
        "status": attempt.status.value,
        "last_error": attempt.last_error,
        "failure_reason": attempt.failure_reason,
        "next_attempt_at": attempt.next_attempt_at,
        "sent_at": now if attempt.sent else None,
        "subject": attempt.subject,
        "body_text": attempt.body_text,
    }


async def open_store(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> Store:
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
        return await PgStore.open(engine, settings)
    return SessionStore(sessionmaker)
