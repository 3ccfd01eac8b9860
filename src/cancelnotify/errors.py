"""The error hierarchy and the handlers that turn it into RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://cancelnotify.dev/problems/"
log = logging.getLogger(__name__)


class CancelNotifyError(Exception):
    """An expected failure with an HTTP status; the docstring of a subclass is its title."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors) if errors else None
        self.headers = headers or {}


class BadRequest(CancelNotifyError):
    status, type, title = 400, "bad-request", "The request body is not valid JSON"


class Unauthorized(CancelNotifyError):
    status, type, title = 401, "unauthorized", "Authentication failed"


class Forbidden(CancelNotifyError):
    status, type, title = 403, "forbidden", "This API key may not do that"


class NotFound(CancelNotifyError):
    status, type, title = 404, "not-found", "Not found"


class PayloadTooLarge(CancelNotifyError):
    status, type, title = 413, "payload-too-large", "The request body is too large"


class UnsupportedMediaType(CancelNotifyError):
    status, type, title = 415, "unsupported-media-type", "Send application/json"


class InvalidEvent(CancelNotifyError):
    status, type, title = 422, "validation-error", "The request does not match the schema"


class Conflict(CancelNotifyError):
    status, type, title = 409, "conflict", "Conflict"


class IdempotencyKeyReused(CancelNotifyError):
    status, type, title = 409, "idempotency-key-reused", "The Idempotency-Key was used before"


class ServiceUnavailable(CancelNotifyError):
    status, type, title = 503, "unavailable", "Temporarily unavailable; retry later"


class NotConfigured(CancelNotifyError):
    status, type, title = 503, "not-configured", "This endpoint is not configured"


def problem(
    status: int,
    type_: str,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = list(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(exc: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors as `[{"field": "customer.email", "message": ...}]` (no input echoed)."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": err["msg"], "type": err["type"]})
    return out


def is_retryable_db_error(exc: BaseException) -> bool:
    """Connection-level database failures: the sender should retry later (Prefect's rule)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError, OSError)):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def raise_if_database_down(exc: BaseException) -> None:
    """A connection-level database failure becomes 503 + Retry-After: nothing was stored."""
    if is_retryable_db_error(exc):
        raise ServiceUnavailable(
            "The database is unavailable; nothing was stored, retry later",
            headers={"Retry-After": "5"},
        ) from exc


def install_handlers(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CancelNotifyError)  # noqa: S101
        return problem(
            exc.status,
            exc.type,
            exc.title,
            exc.detail if exc.detail != exc.title else None,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        return problem(
            422,
            InvalidEvent.type,
            InvalidEvent.title,
            instance=request.url.path,
            errors=field_errors(exc),
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        return problem(
            exc.status_code,
            "http-" + str(exc.status_code),
            str(exc.detail),
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_retryable_db_error(exc):
            log.warning("database unavailable", extra={"error": type(exc).__name__})
            return problem(
                503,
                ServiceUnavailable.type,
                "The database is unavailable; nothing was stored, retry later",
                instance=request.url.path,
                headers={"Retry-After": "5"},
            )
        log.exception("unhandled error")
        return problem(500, "internal", "Internal error", instance=request.url.path)

    app.add_exception_handler(CancelNotifyError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
