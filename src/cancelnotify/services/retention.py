"""Data retention: forget payloads, rendered emails and engagement links past a horizon."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.db import create_engine, create_sessionmaker
from cancelnotify.settings import Settings

_DURATION = re.compile(r"^(\d{1,5})([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_horizon(text: str) -> timedelta:
    """`90d`, `12h` or `30m` as a timedelta; raises ValueError for anything else."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 90d, 12h or 30m")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


async def purge(session: AsyncSession, *, older_than: timedelta, now: datetime) -> dict[str, int]:
    """Clear personal and bulky data of everything older than `older_than`; rows stay.

    Kept: cancellations (event_id, webhook_id: a late webhook retry is still a duplicate),
    notifications (dedupe_key, message_id, status, timestamps: counts and stats), attempts'
    codes and durations, refund events, engagement rows (unlinked from the email) and
    call-back outcomes. Cleared: payloads, subjects and text bodies, relay texts, the email
    link and URL of engagement events, and the phone, name and note of completed call-backs.
    """
    return await repository.purge_before(session, now - older_than)


async def run_purge(settings: Settings, *, older_than: timedelta, now: datetime) -> dict[str, int]:
    """One transaction over the configured database (the CLI's entry point)."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await purge(session, older_than=older_than, now=now)
    finally:
        await engine.dispose()
