"""The RFC 9457 problem document, for documentation of error responses in OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. customer.email")
    message: str
    type: str


class Problem(BaseModel):
    type: str = Field(description="URI naming the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries documenting problem+json bodies for these status codes."""
    return {
        status: {
            "model": Problem,  # registers #/components/schemas/Problem (and FieldError)
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for status in statuses
    }
