"""beyond the email: refund events, call-back tasks, engagement events

Revision ID: 0003_beyond
Revises: 0002_ops
Create Date: 2026-11-28 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_beyond"
down_revision: str | None = "0002_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cancellation_id", sa.Uuid(), nullable=False),
        sa.Column("order_number", sa.String(length=100), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("rules", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("completed_by", sa.String(length=100), nullable=True),
        sa.CheckConstraint("status IN ('open', 'completed')", name=op.f("ck_callbacks_status")),
        sa.ForeignKeyConstraint(
            ["cancellation_id"],
            ["cancellations.id"],
            name=op.f("fk_callbacks_cancellation_id_cancellations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint("cancellation_id", name=op.f("uq_callbacks_cancellation_id")),
    )
    op.create_index(
        op.f("ix_callbacks_created_at_id"), "callbacks", ["created_at", "id"], unique=False
    )
    op.create_index(
        op.f("ix_callbacks_status_due_at"), "callbacks", ["status", "due_at"], unique=False
    )
    op.create_table(
        "engagement_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('feedback', 'open', 'click')", name=op.f("ck_engagement_events_kind")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_engagement_events_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_engagement_events_dedupe_key")),
    )
    op.create_index(
        op.f("ix_engagement_events_notification_id"),
        "engagement_events",
        ["notification_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_engagement_events_occurred_at"), "engagement_events", ["occurred_at"], unique=False
    )
    op.create_table(
        "refund_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cancellation_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('initiated', 'completed', 'failed')", name=op.f("ck_refund_events_kind")
        ),
        sa.ForeignKeyConstraint(
            ["cancellation_id"],
            ["cancellations.id"],
            name=op.f("fk_refund_events_cancellation_id_cancellations"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_refund_events_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_events")),
        sa.UniqueConstraint(
            "cancellation_id",
            "idempotency_key",
            name=op.f("uq_refund_events_cancellation_id_idempotency_key"),
        ),
    )
    op.create_index(
        op.f("ix_refund_events_cancellation_id_occurred_at"),
        "refund_events",
        ["cancellation_id", "occurred_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_refund_events_cancellation_id_occurred_at"), table_name="refund_events")
    op.drop_table("refund_events")
    op.drop_index(op.f("ix_engagement_events_occurred_at"), table_name="engagement_events")
    op.drop_index(op.f("ix_engagement_events_notification_id"), table_name="engagement_events")
    op.drop_table("engagement_events")
    op.drop_index(op.f("ix_callbacks_status_due_at"), table_name="callbacks")
    op.drop_index(op.f("ix_callbacks_created_at_id"), table_name="callbacks")
    op.drop_table("callbacks")
