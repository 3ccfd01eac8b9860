"""API keys: create (shown once), list, revoke; only SHA-256 hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from sqlalchemy import or_, select, update

from cancelnotify.clock import utcnow
from cancelnotify.db import create_engine, create_sessionmaker
from cancelnotify.models import ApiKey
from cancelnotify.settings import Settings


def new_key() -> str:
    return "cn_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """What is stored of a key, and what a presented key is looked up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def _row(key: str, name: str, scope: str) -> ApiKey:
    return ApiKey(
        id=uuid.uuid4(),
        name=name,
        scope=scope,
        prefix=key[:12],
        key_hash=hash_key(key),
        created_at=utcnow(),
    )


async def create(settings: Settings, name: str, scope: str) -> str:
    key = new_key()
    await ensure(settings, key, name, scope)
    return key


async def ensure(settings: Settings, key: str, name: str, scope: str) -> None:
    """Store `key` unless it is already stored (the `dev` command's printed demo key)."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            found = await session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
            if found.scalar_one_or_none() is None:
                session.add(_row(key, name, scope))
    finally:
        await engine.dispose()


async def list_keys(settings: Settings) -> list[tuple[str, str, str, str, str]]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            rows = (await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars()
            return [
                (
                    str(k.id),
                    k.prefix + "…",
                    k.name,
                    k.scope,
                    "revoked" if k.revoked_at else "active",
                )
                for k in rows
            ]
    finally:
        await engine.dispose()


async def revoke(settings: Settings, key: str) -> bool:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            try:
                match = or_(ApiKey.id == uuid.UUID(key), ApiKey.prefix == key)
            except ValueError:
                match = ApiKey.prefix == key.rstrip("…")
            result = await session.execute(
                update(ApiKey).where(match, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
