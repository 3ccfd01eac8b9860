"""Ops route for the health of the flow at a glance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cancelnotify.api.deps import ApiKeyDep, ClockDep, SessionDep, SettingsDep
from cancelnotify.schemas.api import IsoDateTime, Stats
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import stats

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "",
    response_model=Stats,
    summary="Delivery, engagement and follow-through figures for a window (default: 24 h)",
    responses=problem_responses(401, 422, 503),
)
async def get_stats(
    session: SessionDep,
    _key: ApiKeyDep,
    clock: ClockDep,
    settings: SettingsDep,
    since: Annotated[IsoDateTime | None, Query(description="Default: 24 h before `until`")] = None,
    until: Annotated[IsoDateTime | None, Query(description="Default: now")] = None,
) -> Stats:
    return await stats.compute(
        session, since=since, until=until, now=clock(), tracking_enabled=settings.tracking_enabled
    )
