"""Read models of the HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class WebhookAccepted(BaseModel):
    cancellation_id: uuid.UUID
    notification_id: uuid.UUID
    status: str = Field(description="The notification's delivery status")
    duplicate: bool = Field(description="True when this event was already received")


class WebhookIgnored(BaseModel):
    ignored: bool = True
    reason: str


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    started_at: datetime
    duration_ms: int
    outcome: str
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


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    recipient: str
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


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
