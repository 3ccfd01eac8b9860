"""Engagement, measured honestly: one feedback answer per email, unique opens and clicks."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import NotFound
from cancelnotify.links import (
    FeedbackAnswer,
    InvalidLinkTokenError,
    verify_click_token,
    verify_feedback_token,
    verify_open_token,
)
from cancelnotify.schemas.api import EngagementEvent as EngagementEventRead
from cancelnotify.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedbackOutcome:
    """The answer given, the email's locale (for the thank-you page), and whether it counted."""

    notification_id: uuid.UUID
    answer: FeedbackAnswer
    locale: str | None
    counted: bool


async def _record(
    session: AsyncSession,
    notification_id: uuid.UUID,
    *,
    kind: str,
    value: str,
    dedupe_key: str,
    now: datetime,
    detail: str | None = None,
) -> bool:
    inserted = await repository.insert_engagement(
        session,
        {
            "id": uuid.uuid4(),
            "notification_id": notification_id,
            "kind": kind,
            "value": value,
            "detail": detail,
            "dedupe_key": dedupe_key,
            "occurred_at": now,
        },
    )
    return inserted is not None


async def record_feedback(
    session: AsyncSession, token: str, *, settings: Settings, now: datetime
) -> FeedbackOutcome:
    """Record the answer of a feedback link once per email; a second click changes nothing."""
    try:
        vote = verify_feedback_token(token, settings.signing_key())
    except InvalidLinkTokenError:
        raise NotFound("This feedback link is not valid") from None
    notification = await repository.get_notification_with_cancellation(
        session, vote.notification_id
    )
    if notification is None:
        raise NotFound("This feedback link is not valid")
    counted = await _record(
        session,
        vote.notification_id,
        kind="feedback",
        value=vote.answer,
        dedupe_key=f"feedback:{vote.notification_id}",
        now=now,
    )
    log.info("feedback", extra={"notification_id": str(vote.notification_id), "counted": counted})
    return FeedbackOutcome(vote.notification_id, vote.answer, notification.locale, counted)


async def record_open(
    session: AsyncSession, token: str, *, settings: Settings, now: datetime
) -> None:
    """Count the first open of an email (tracking on); 404 for anything not ours."""
    if not settings.tracking_enabled:
        raise NotFound("Open tracking is off")
    try:
        notification_id = verify_open_token(token, settings.signing_key())
    except InvalidLinkTokenError:
        raise NotFound("Not a tracking pixel of ours") from None
    if not await repository.notification_exists(session, notification_id):
        raise NotFound("Not a tracking pixel of ours")
    await _record(
        session,
        notification_id,
        kind="open",
        value="open",
        dedupe_key=f"open:{notification_id}",
        now=now,
    )


async def follow_click(
    session: AsyncSession, token: str, *, settings: Settings, now: datetime
) -> str:
    """The signed target of a tracked link; the first click per link and email is counted.

    The target is inside the signed token, so a tampered token (or URL) is refused: no open
    redirect. With tracking switched off, old links still lead on but nothing is recorded.
    """
    try:
        click = verify_click_token(token, settings.signing_key())
    except InvalidLinkTokenError:
        raise NotFound("This link is not valid") from None
    if settings.tracking_enabled and await repository.notification_exists(
        session, click.notification_id
    ):
        await _record(
            session,
            click.notification_id,
            kind="click",
            value=click.label,
            detail=click.url,
            dedupe_key=f"click:{click.notification_id}:{click.label}",
            now=now,
        )
    return click.url


async def for_notification(
    session: AsyncSession, notification_id: uuid.UUID
) -> list[EngagementEventRead]:
    rows = await repository.engagement_for(session, notification_id)
    return [
        EngagementEventRead(
            type=r.kind, at=r.occurred_at, detail=r.value if r.kind != "open" else None
        )
        for r in rows
    ]
