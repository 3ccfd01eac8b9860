"""ORM tables: cancellations, notifications (the outbox), delivery attempts, API keys, audit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cancelnotify.db import Base, UtcDateTime
from cancelnotify.states import Status

JsonType = JSON().with_variant(JSONB(), "postgresql")
_STATUSES = ", ".join(f"'{s.value}'" for s in Status)


class Cancellation(Base):
    """One received cancellation event, kept as the sender sent it."""

    # On PostgreSQL, rows up to 8 KB are stored uncompressed (toast_tuple_target, migration 0004).

    __tablename__ = "cancellations"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        UniqueConstraint("source", "webhook_id"),
        Index(None, "order_id"),
        Index(None, "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200))
    webhook_id: Mapped[str | None] = mapped_column(String(200))
    order_id: Mapped[str] = mapped_column(String(100))
    order_number: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

    notifications: Mapped[list[Notification]] = relationship(
        back_populates="cancellation", lazy="raise"
    )


class Notification(Base):
    """One email to send: the outbox row the dispatchers claim, with its state and lease."""

    # On PostgreSQL, rows up to 8 KB are stored uncompressed (toast_tuple_target, migration 0004).

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status"),
        Index(
            "ix_notifications_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'retrying')"),
            sqlite_where=text("status IN ('queued', 'retrying')"),
        ),
        Index(
            "ix_notifications_lease",
            "locked_until",
            postgresql_where=text("status = 'sending'"),
            sqlite_where=text("status = 'sending'"),
        ),
        Index(None, "created_at", "id"),
        Index(None, "cancellation_id"),
        # Ops list filters (GET /v1/notifications), newest first within each filter.
        Index(None, "status", "created_at", "id"),
        Index(None, "recipient", "created_at", "id"),
        Index(None, "resend_of_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    cancellation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cancellations.id"))
    kind: Mapped[str] = mapped_column(String(40))
    # The business key: one email of a kind per order; NULL for explicit ops resends.
    dedupe_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    locale: Mapped[str | None] = mapped_column(String(35))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(40))
    send_by: Mapped[datetime] = mapped_column(UtcDateTime)
    resend_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    cancellation: Mapped[Cancellation] = relationship(back_populates="notifications", lazy="raise")
    attempt_rows: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification", lazy="raise", order_by="DeliveryAttempt.number"
    )


class DeliveryAttempt(Base):
    """One SMTP conversation for a notification: when, how long, and what the relay said."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("notification_id", "number"),
        Index(None, "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notifications.id"))
    number: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_text: Mapped[str | None] = mapped_column(Text)

    notification: Mapped[Notification] = relationship(back_populates="attempt_rows", lazy="raise")


class ApiKey(Base):
    """An ops API key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("scope IN ('read', 'admin')", name="scope"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(10))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEvent(Base):
    """One ops action (a resend): who did it, when, why, and its idempotency key."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index(None, "notification_id"),
        Index(None, "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    action: Mapped[str] = mapped_column(String(40))
    notification_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notifications.id"))
    result_notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    api_key_name: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RefundEvent(Base):
    """One refund update from the shop (initiated, completed, failed) for a cancellation."""

    __tablename__ = "refund_events"
    __table_args__ = (
        CheckConstraint("kind IN ('initiated', 'completed', 'failed')", name="kind"),
        UniqueConstraint("cancellation_id", "idempotency_key"),
        Index(None, "cancellation_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    cancellation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cancellations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[str] = mapped_column(String(32))  # a decimal string, never a float
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str | None] = mapped_column(String(20))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # The follow-up email a `completed` event queued (None: not this event, or already sent).
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CallbackTask(Base):
    """A personal phone call to make: only what the call needs (no email, no address)."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'completed')", name="status"),
        UniqueConstraint("cancellation_id"),
        Index(None, "status", "due_at"),
        Index(None, "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    cancellation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cancellations.id"))
    order_number: Mapped[str] = mapped_column(String(100))
    first_name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(40))
    rules: Mapped[str] = mapped_column(String(200))  # why it was opened: high_value, vip, reason
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    completed_by: Mapped[str | None] = mapped_column(String(100))


class EngagementEvent(Base):
    """A feedback answer, an open or a click, at most once per `dedupe_key`.

    Retention clears `notification_id` and `detail` past the horizon but keeps the row, so
    counts stay and a late second click still finds its key.
    """

    __tablename__ = "engagement_events"
    __table_args__ = (
        CheckConstraint("kind IN ('feedback', 'open', 'click')", name="kind"),
        UniqueConstraint("dedupe_key"),
        Index(None, "notification_id"),
        Index(None, "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(40))  # yes/no, or the link: reorder, alternative
    detail: Mapped[str | None] = mapped_column(Text)  # the clicked URL
    dedupe_key: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
