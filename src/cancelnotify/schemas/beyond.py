"""I/O models of the customer-facing follow-through: refund events, call-back tasks, KPIs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cancelnotify.schemas.event import Currency
from cancelnotify.settings import RefundMethodName

TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # free text: lines, but no control chars
RefundEventKind = Literal["initiated", "completed", "failed"]
CallbackStatus = Literal["open", "completed"]
CallbackOutcome = Literal["reached", "voicemail", "no_answer", "wrong_number", "declined"]


class RefundEventCreate(BaseModel):
    """A refund update from the shop's backend."""

    model_config = ConfigDict(extra="forbid")

    kind: RefundEventKind = Field(description="initiated, completed or failed")
    amount: str = Field(
        pattern=r"^\d{1,15}(\.\d{1,4})?$", description='Decimal string, e.g. "129.90"'
    )
    currency: Currency | None = Field(
        default=None, description="Default: the currency of the cancelled order's refund"
    )
    method: RefundMethodName | None = Field(
        default=None, description="Default: the method in the cancellation event"
    )
    occurred_at: AwareDatetime | None = Field(default=None, description="Default: now")


class RefundEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    cancellation_id: uuid.UUID
    kind: str
    amount: str
    currency: str
    method: str | None
    idempotency_key: str | None
    notification_id: uuid.UUID | None = Field(
        description="The 'refund is on its way' email this event queued (completed only)"
    )
    occurred_at: datetime
    created_at: datetime


class RefundEventResult(BaseModel):
    """The stored event, and the follow-up email of the cancellation (if any) with its status."""

    event: RefundEventRead
    refund_status: RefundEventKind = Field(description="Where the refund stands now")
    follow_up_notification_id: uuid.UUID | None = Field(
        description="The one refund_completed email of this cancellation, once completed"
    )
    follow_up_duplicate: bool = Field(
        description="True when the refund was already completed: no second email"
    )


class CallbackRead(BaseModel):
    """A call to make: the minimum the caller needs (no email, no address)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    cancellation_id: uuid.UUID
    order_number: str
    first_name: str | None
    phone: str | None = Field(description="Cleared by retention once the task is completed")
    reason: str = Field(description="The cancellation reason code")
    rules: str = Field(description="Why it was opened: high_value, vip, reason (comma-separated)")
    status: CallbackStatus
    overdue: bool = False
    due_at: datetime
    created_at: datetime
    completed_at: datetime | None
    outcome: str | None
    note: str | None
    completed_by: str | None


class CallbackPage(BaseModel):
    """Most urgent first; pass `next_cursor` as `cursor` for the next page."""

    items: list[CallbackRead]
    next_cursor: str | None


class CallbackFilters(BaseModel):
    status: CallbackStatus | None = Field(default="open", description="Default: open tasks")
    overdue: bool | None = Field(default=None, description="true: only open tasks past due_at")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9_-]*$")


class CallbackComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: CallbackOutcome
    note: str | None = Field(
        default=None,
        max_length=2000,
        pattern=TEXT,
        description="What was agreed (kept until retention)",
    )


class FeedbackScore(BaseModel):
    yes: int
    no: int
    score: float | None = Field(description="yes / (yes + no); null without answers")


class ClickThrough(BaseModel):
    reorder: float | None = Field(description="Sent cancellation emails with a reorder click")
    alternatives: float | None = Field(description="... with a click on a recommended product")
    reorder_clicks: int
    alternative_clicks: int


class Opens(BaseModel):
    enabled: bool
    opened: int | None
    rate: float | None = Field(description="Opened / sent; null when tracking is off")


class CallbackCounts(BaseModel):
    open: int
    overdue: int
