"""The call-back queue: open and overdue tasks for a personal call, and closing one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from cancelnotify.api.deps import AdminKeyDep, ApiKeyDep, ClockDep, SessionDep
from cancelnotify.schemas.beyond import (
    CallbackComplete,
    CallbackFilters,
    CallbackPage,
    CallbackRead,
)
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import callbacks

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])


@router.get(
    "",
    response_model=CallbackPage,
    summary="Call-back tasks, earliest due first (default: open ones)",
    responses=problem_responses(401, 422, 503),
)
async def list_callbacks(
    filters: Annotated[CallbackFilters, Query()],
    session: SessionDep,
    _key: ApiKeyDep,
    clock: ClockDep,
) -> CallbackPage:
    return await callbacks.list_page(session, filters, now=clock())


@router.post(
    "/{callback_id}/complete",
    status_code=status.HTTP_200_OK,
    response_model=CallbackRead,
    summary="Close a call-back task with its outcome and a note (admin)",
    responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
)
async def complete_callback(
    callback_id: uuid.UUID,
    body: CallbackComplete,
    session: SessionDep,
    key: AdminKeyDep,
    clock: ClockDep,
) -> CallbackRead:
    return await callbacks.complete(session, callback_id, body, key=key, now=clock())
