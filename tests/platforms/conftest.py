"""Shared helpers for the platform mapping and signature tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

OWN_FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
# Real third-party payloads, kept outside the repository on purpose (never copy them in).
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "platforms"


@pytest.fixture
def own_fixture() -> Callable[[str], dict[str, Any]]:
    """Load one of our documented-shape fixtures as a fresh dict the test may edit."""

    def load(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((OWN_FIXTURES / name).read_text(encoding="utf-8"))
        return data

    return load


@pytest.fixture
def own_raw() -> Callable[[str], bytes]:
    """Load one of our fixtures as the exact bytes a platform would send."""

    def load(name: str) -> bytes:
        return (OWN_FIXTURES / name).read_bytes()

    return load


@pytest.fixture
def shared_fixtures() -> Path:
    """The folder of real payloads and published vectors, or a clean skip when it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real platform payloads not present at {SHARED_FIXTURES}")
    return SHARED_FIXTURES
