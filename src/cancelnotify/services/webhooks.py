"""Receiving webhooks: verify over the raw bytes, then parse and validate, then ingest."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import ValidationError

from cancelnotify import signatures
from cancelnotify.errors import (
    BadRequest,
    InvalidEvent,
    NotConfigured,
    Unauthorized,
    UnsupportedMediaType,
    field_errors,
)
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.ingest import Handover, IngestResult, ingest
from cancelnotify.settings import Settings
from cancelnotify.store import Store


def require_json(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Content-Type must be application/json")


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse JSON (depth-limited by the parser) into an object, or raise a 400 problem."""
    try:
        data = pydantic_core.from_json(body)
    except ValueError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(
            errors=[{"field": "body", "message": "must be a JSON object", "type": "object_type"}]
        )
    if b"\\u0000" in body:  # only an escape can put U+0000 in JSON; look closer
        where = _nul_path(data)
        if where is not None:
            raise InvalidEvent(
                errors=[
                    {
                        "field": where or "body",
                        "message": "must not contain the NUL character (U+0000)",
                        "type": "string_nul",
                    }
                ]
            )
    return data


def _nul_path(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding U+0000, which PostgreSQL refuses."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return here
        found = _nul_path(item, here)
        if found is not None:
            return found
    return None


def _event_from(body: bytes) -> tuple[CancellationEventV1, dict[str, Any] | None]:
    """The event validated straight from the bytes (half the cost of a dict, then a model).

    Whatever that refuses goes the two-step way again, which names the problem precisely: 400
    for broken JSON, 422 with the field. So does a body with an escaped U+0000, which JSON
    allows and PostgreSQL does not.
    """
    if b"\\u0000" not in body:
        try:
            return CancellationEventV1.model_validate_json(body), None
        except ValidationError:
            pass
    data = parse_json(body)
    return validate_event(data), data


def validate_event(data: dict[str, Any]) -> CancellationEventV1:
    try:
        return CancellationEventV1.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent(errors=field_errors(exc)) from None


async def receive_canonical(
    store: Store,
    body: bytes,
    *,
    headers: Mapping[str, str],
    settings: Settings,
    now: datetime,
    request_id: str | None,
    handover: Handover | None = None,
) -> IngestResult:
    """Standard Webhooks: signature and timestamp first, before a byte of JSON is parsed."""
    keys = settings.webhook_keys()
    if not keys:
        raise NotConfigured("CANCELNOTIFY_WEBHOOK_SECRET is not set; nothing can be accepted")
    try:
        signed = signatures.parse_headers(
            headers.get("webhook-id"),
            headers.get("webhook-timestamp"),
            headers.get("webhook-signature"),
        )
        signatures.verify(
            signed, body, keys, now=now.timestamp(), tolerance=settings.webhook_tolerance_seconds
        )
    except signatures.SignatureError as exc:
        raise Unauthorized(str(exc)) from None
    require_json(headers.get("content-type"))
    event, data = _event_from(body)
    return await ingest(
        store,
        event,
        source="canonical",
        webhook_id=signed.webhook_id,
        payload=data,
        settings=settings,
        now=now,
        request_id=request_id,
        handover=handover,
        payload_text=body.decode(),  # parsed above, so valid UTF-8 JSON
    )
