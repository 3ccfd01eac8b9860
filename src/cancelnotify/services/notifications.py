"""Notification queries for ops."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import NotFound
from cancelnotify.schemas.api import NotificationRead


def mask_email(address: str) -> str:
    """`ana@example.com` -> `a**@example.com`: enough to recognise, not to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}{'*' * max(2, len(local) - 1)}@{domain}"


async def get(
    session: AsyncSession, notification_id: uuid.UUID, *, reveal_recipient: bool
) -> NotificationRead:
    row = await repository.get_notification(session, notification_id)
    if row is None:
        raise NotFound(f"No notification {notification_id}")
    read = NotificationRead.model_validate(row)
    if not reveal_recipient:
        read = read.model_copy(update={"recipient": mask_email(read.recipient)})
    return read
