"""API tests run on PostgreSQL and once more on SQLite (the `dev` backend)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
