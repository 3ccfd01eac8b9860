"""Read models of the HTTP API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cancelnotify.schemas.beyond import CallbackCounts, ClickThrough, FeedbackScore, Opens
from cancelnotify.schemas.event import Reason
from cancelnotify.states import Status

Source = Literal["canonical", "shopify", "woocommerce"]
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _iso_only(value: object) -> object:
    # pydantic would also take "1700000000" as Unix seconds; the contract is ISO 8601 only.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d\d-\d\d", value):
        raise ValueError("must be an ISO 8601 date-time such as 2026-11-26T10:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]


class WebhookAccepted(BaseModel):
    cancellation_id: uuid.UUID
    notification_id: uuid.UUID
    status: str = Field(description="The notification's delivery status")
    duplicate: bool = Field(description="True when this event was already received")


class WebhookIgnored(BaseModel):
    ignored: bool = True
    reason: str


class AttemptRead(BaseModel):
    """One SMTP conversation: when, how long, the relay's reply and what it came to."""

    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    duration_ms: int
    outcome: str = Field(description="sent, transient, permanent, ambiguous or config")
    smtp_code: int | None
    smtp_text: str | None
    worker: str


class CancellationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    source: str
    event_id: str
    order_id: str
    order_number: str | None
    reason: str
    reference: str
    received_at: datetime


class EngagementEvent(BaseModel):
    """An open, a click (detail: the link, e.g. reorder) or a feedback answer (yes/no)."""

    type: str = Field(description="feedback, open or click")
    at: datetime
    detail: str | None = None


class AuditEventRead(BaseModel):
    """An ops action on a notification: who, when, why."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str
    notification_id: uuid.UUID = Field(description="The notification acted upon")
    result_notification_id: uuid.UUID | None = Field(description="The resend it created")
    api_key_id: uuid.UUID | None
    api_key_name: str
    reason: str
    idempotency_key: str | None
    request_id: str | None
    created_at: datetime


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    recipient: str = Field(description="Masked (a**@example.com) unless the API key is admin")
    locale: str | None
    attempts: int
    next_attempt_at: datetime | None
    message_id: str
    subject: str | None
    last_error: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    send_by: datetime
    resend_of_id: uuid.UUID | None
    cancellation: CancellationSummary
    attempt_timeline: list[AttemptRead] = Field(validation_alias="attempt_rows")
    engagement: list[EngagementEvent] = Field(
        default_factory=list,
        description="Feedback answers, and opens and clicks when TRACKING_ENABLED, oldest first",
    )
    request_id: str | None = Field(
        default=None, description="The request that created it; found in the logs of every step"
    )
    resends: list[uuid.UUID] = Field(
        default_factory=list, description="Notifications created by resending this one"
    )
    audit: list[AuditEventRead] = Field(
        default_factory=list, description="Ops actions on this notification (resends)"
    )


class NotificationSummary(BaseModel):
    """A row of the notification list."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    recipient: str = Field(description="Masked (a**@example.com) unless the API key is admin")
    attempts: int
    message_id: str
    subject: str | None
    failure_reason: str | None
    created_at: datetime
    sent_at: datetime | None
    resend_of_id: uuid.UUID | None
    cancellation_id: uuid.UUID
    order_id: str
    order_number: str | None
    reason: str
    source: str


class NotificationPage(BaseModel):
    """One page, newest first; pass `next_cursor` as `cursor` for the next (older) page."""

    items: list[NotificationSummary]
    next_cursor: str | None = Field(description="Opaque; null on the last page")


class NotificationFilters(BaseModel):
    """Query of GET /v1/notifications: filters (combined with AND), page size and cursor."""

    status: Status | None = None
    order_id: str | None = Field(None, max_length=100, pattern=PRINTABLE)
    recipient: str | None = Field(
        None, max_length=320, pattern=PRINTABLE, description="Exact address (case as sent)"
    )
    reason: Reason | None = None
    source: Source | None = None
    since: IsoDateTime | None = Field(None, description="created_at >= since (naive means UTC)")
    until: IsoDateTime | None = Field(None, description="created_at < until (naive means UTC)")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None, max_length=200, pattern=PRINTABLE, description="next_cursor of the previous page"
    )


class ResendRequest(BaseModel):
    """Why ops resend this email; kept in the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000, description="Why (kept in the audit log)")


class CancellationRead(CancellationSummary):
    """A received cancellation and every email it caused (resends included)."""

    webhook_id: str | None
    occurred_at: datetime
    notifications: list[NotificationSummary]


class CancellationList(BaseModel):
    items: list[CancellationRead]


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class FailureReason(BaseModel):
    reason: str
    count: int


class Stats(BaseModel):
    """Health of the flow for notifications created in [since, until)."""

    since: datetime
    until: datetime
    total: int
    by_status: dict[str, int] = Field(description="Every status, zero included")
    delivery_rate: float | None = Field(
        description="sent / (sent + failed); null until something finished"
    )
    webhook_to_smtp_seconds: Percentiles = Field(
        description="Time from webhook receipt (or resend request) to SMTP acceptance"
    )
    attempts: int = Field(description="SMTP attempts made")
    retries: int = Field(description="Attempts beyond the first")
    retried_notifications: int = Field(description="Notifications needing more than one attempt")
    top_failure_reasons: list[FailureReason]
    oldest_queued_age_seconds: float | None = Field(
        description="Age of the oldest notification not yet sent or failed (whatever `since`)"
    )
    cancellation_to_email_seconds: Percentiles | None = Field(
        default=None,
        description="From the cancellation (event occurred_at) to SMTP acceptance of its email",
    )
    feedback: FeedbackScore | None = Field(default=None, description="Answers given in the window")
    click_through: ClickThrough | None = Field(
        default=None, description="Per cancellation email sent in the window (tracking on)"
    )
    opens: Opens | None = None
    callbacks: CallbackCounts | None = Field(default=None, description="Now, whatever the window")


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
