"""rows up to 8 KB stored as they are: no TOAST compression of the payload and the email text

Revision ID: 0004_uncompressed_rows
Revises: 0003_beyond
Create Date: 2026-11-28 19:30:00.000000

A cancellation's payload (about 2 KB of JSON) and a notification's text body (about 2 KB) put
their rows past PostgreSQL's default TOAST threshold (about 2 KB), so every ingest compressed
the payload with pglz, every send's outcome compressed the text, and every claim decompressed
the payload again: CPU on the hot path for a few hundred bytes of disk per row. With
`toast_tuple_target` at its maximum, rows up to about 8 KB stay inline and uncompressed; larger
ones (a long order) are still compressed and moved out of line. PostgreSQL only.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_uncompressed_rows"
down_revision: str | None = "0003_beyond"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("cancellations", "notifications")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (toast_tuple_target)")
