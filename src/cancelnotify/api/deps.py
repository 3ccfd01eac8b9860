"""Annotated dependency aliases: the session (one transaction per request), settings, auth."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.clock import Clock
from cancelnotify.errors import Forbidden, PayloadTooLarge, Unauthorized, raise_if_database_down
from cancelnotify.models import ApiKey
from cancelnotify.services.apikeys import hash_key
from cancelnotify.services.ingest import WAKE
from cancelnotify.settings import Settings


async def get_settings(request: Request) -> Settings:
    """Async on purpose: FastAPI runs a sync dependency in a worker thread (profiled)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent.

    Declared with scope="function" so the commit runs before the response: a failed commit
    becomes a 503, never a lost 202. The dispatcher is woken only after the commit.
    """
    sessionmaker = request.app.state.sessionmaker
    try:
        async with sessionmaker.begin() as session:
            yield session
    except Exception as exc:
        raise_if_database_down(exc)
        raise
    if session.info.get(WAKE):
        request.app.state.dispatcher.wake()


async def read_body(request: Request) -> bytes:
    """The raw body, refused while streaming once it passes MAX_BODY_BYTES."""
    settings: Settings = request.app.state.settings
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RawBodyDep = Annotated[bytes, Depends(read_body)]


# Documents `Authorization: Bearer` in OpenAPI; the checks (and their problem+json) are ours.
_bearer = HTTPBearer(auto_error=False, description="An API key from `cancelnotify apikey create`")


async def get_api_key(
    request: Request,
    session: SessionDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Send Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"}
        )
    key = await repository.find_api_key(session, hash_key(token.strip()))
    if key is None:
        raise Unauthorized("Unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return key


ApiKeyDep = Annotated[ApiKey, Depends(get_api_key)]


async def require_admin(key: ApiKeyDep) -> ApiKey:
    if key.scope != "admin":
        raise Forbidden("This route needs an admin API key")
    return key


AdminKeyDep = Annotated[ApiKey, Depends(require_admin)]
