"""ops api: list indexes, audit events for resends

Revision ID: 0002_ops
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ops"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # GET /v1/notifications: every filter walks an index in (created_at, id) order, so
    # "newest first, after this cursor, limit N" stops after N rows.
    op.create_index(
        op.f("ix_notifications_status_created_at_id"),
        "notifications",
        ["status", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notifications_recipient_created_at_id"),
        "notifications",
        ["recipient", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notifications_resend_of_id"), "notifications", ["resend_of_id"], unique=False
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=False),
        sa.Column("result_notification_id", sa.Uuid(), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("api_key_name", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_audit_events_api_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_audit_events_notification_id_notifications"),
        ),
        sa.ForeignKeyConstraint(
            ["result_notification_id"],
            ["notifications.id"],
            name=op.f("fk_audit_events_result_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_audit_events_idempotency_key")),
    )
    op.create_index(
        op.f("ix_audit_events_notification_id"), "audit_events", ["notification_id"], unique=False
    )
    op.create_index(
        op.f("ix_audit_events_created_at"), "audit_events", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_created_at"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_notification_id"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_notifications_resend_of_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_recipient_created_at_id"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_status_created_at_id"), table_name="notifications")
