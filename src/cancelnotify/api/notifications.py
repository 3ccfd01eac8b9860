"""Ops routes for notifications: list, detail with its timeline, and the audited resend."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from cancelnotify.api.deps import AdminKeyDep, ApiKeyDep, ClockDep, SessionDep, SettingsDep
from cancelnotify.schemas.api import (
    PRINTABLE,
    NotificationFilters,
    NotificationPage,
    NotificationRead,
    ResendRequest,
)
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import notifications

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=PRINTABLE,
        description="Repeat the same key to get the first result back instead of a new email",
    ),
]


@router.get(
    "",
    response_model=NotificationPage,
    summary="Notifications, newest first, filtered and cursor-paginated",
    responses=problem_responses(401, 422, 503),
)
async def list_notifications(
    filters: Annotated[NotificationFilters, Query()], session: SessionDep, key: ApiKeyDep
) -> NotificationPage:
    return await notifications.list_page(
        session,
        filters,
        cursor=filters.cursor,
        limit=filters.limit,
        reveal_recipient=key.scope == "admin",
    )


@router.get(
    "/{notification_id}",
    response_model=NotificationRead,
    summary="A notification with its status, attempt timeline, cancellation and audit trail",
    responses=problem_responses(401, 404, 422, 503),
)
async def get_notification(
    notification_id: uuid.UUID, session: SessionDep, key: ApiKeyDep
) -> NotificationRead:
    return await notifications.get(session, notification_id, reveal_recipient=key.scope == "admin")


@router.post(
    "/{notification_id}/resend",
    status_code=status.HTTP_201_CREATED,
    response_model=NotificationRead,
    summary="Send a finished notification again, as a new email (admin; audited)",
    responses={
        200: {"model": NotificationRead, "description": "Same Idempotency-Key: the first result"},
        **problem_responses(400, 401, 403, 404, 409, 422, 503),
    },
)
async def resend_notification(
    notification_id: uuid.UUID,
    body: ResendRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    key: AdminKeyDep,
    settings: SettingsDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey = None,
) -> NotificationRead:
    read, created = await notifications.resend(
        session,
        notification_id,
        reason=body.reason,
        idempotency_key=idempotency_key,
        key=key,
        settings=settings,
        now=clock(),
        request_id=request.state.request_id,
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return read
