"""Ops reads of notifications."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from cancelnotify.api.deps import ApiKeyDep, SessionDep
from cancelnotify.schemas.api import NotificationRead
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import notifications

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.get(
    "/{notification_id}",
    response_model=NotificationRead,
    summary="A notification with its status and attempt timeline",
    responses=problem_responses(401, 404),
)
async def get_notification(
    notification_id: uuid.UUID, session: SessionDep, key: ApiKeyDep
) -> NotificationRead:
    return await notifications.get(session, notification_id, reveal_recipient=key.scope == "admin")
