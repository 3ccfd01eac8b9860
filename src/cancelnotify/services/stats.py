"""Aggregates for ops: GET /v1/stats and the database-backed gauges of /metrics."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.metrics import Metrics
from cancelnotify.schemas.api import FailureReason, Percentiles, Stats
from cancelnotify.schemas.beyond import CallbackCounts, ClickThrough, FeedbackScore, Opens
from cancelnotify.services.notifications import as_utc
from cancelnotify.states import DUE, Status

DEFAULT_WINDOW = timedelta(hours=24)


async def compute(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    tracking_enabled: bool = False,
) -> Stats:
    """Counts, delivery rate, latency percentiles, retries and failures for a window."""
    end = as_utc(until) if until else now
    start = as_utc(since) if since else end - DEFAULT_WINDOW
    rows = await repository.stats(session, since=start, until=end)
    by_status = {s.value: rows.by_status.get(s.value, 0) for s in Status}
    finished = by_status[Status.sent] + by_status[Status.failed]
    p50, p95, p99 = rows.latency
    return Stats(
        since=start,
        until=end,
        total=sum(by_status.values()),
        by_status=by_status,
        delivery_rate=by_status[Status.sent] / finished if finished else None,
        webhook_to_smtp_seconds=Percentiles(p50=p50, p95=p95, p99=p99),
        attempts=rows.attempts,
        retries=rows.retries,
        retried_notifications=rows.retried,
        top_failure_reasons=[FailureReason(reason=r, count=k) for r, k in rows.failure_reasons],
        oldest_queued_age_seconds=(
            max(0.0, (now - rows.oldest_pending_at).total_seconds())
            if rows.oldest_pending_at
            else None
        ),
        **await _beyond(session, since=start, until=end, now=now, tracking=tracking_enabled),
    )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


async def _beyond(
    session: AsyncSession, *, since: datetime, until: datetime, now: datetime, tracking: bool
) -> dict[str, Any]:
    """Feedback score, click-through, opens, cancellation-to-email time, call-backs."""
    rows = await repository.engagement_stats(session, since=since, until=until, now=now)
    sent = rows.sent_cancellation_emails
    yes, no = rows.feedback["yes"], rows.feedback["no"]
    values = rows.cancellation_to_email
    return {
        "cancellation_to_email_seconds": Percentiles(
            p50=repository.percentile_cont(values, 0.5),
            p95=repository.percentile_cont(values, 0.95),
            p99=repository.percentile_cont(values, 0.99),
        ),
        "feedback": FeedbackScore(yes=yes, no=no, score=_rate(yes, yes + no)),
        "click_through": ClickThrough(
            reorder=_rate(rows.clicked["reorder"], sent),
            alternatives=_rate(rows.clicked["alternative"], sent),
            reorder_clicks=rows.clicked["reorder"],
            alternative_clicks=rows.clicked["alternative"],
        ),
        "opens": Opens(
            enabled=tracking,
            opened=rows.opened if tracking else None,
            rate=_rate(rows.opened, sent) if tracking else None,
        ),
        "callbacks": CallbackCounts(open=rows.callbacks_open, overdue=rows.callbacks_overdue),
    }


async def refresh_gauges(session: AsyncSession, metrics: Metrics, *, now: datetime) -> None:
    """Set the gauges that live in the database (state counts, queue depth, oldest age)."""
    state = await repository.queue_state(session)
    for status in Status:
        metrics.notifications.labels(status.value).set(state.by_status.get(status.value, 0))
    metrics.queue_depth.set(sum(state.by_status.get(s.value, 0) for s in DUE))
    metrics.oldest_queued_age.set(
        max(0.0, (now - state.oldest_pending_at).total_seconds()) if state.oldest_pending_at else 0
    )
