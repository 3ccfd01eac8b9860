"""Fixtures for the workbench tests: settings that render links as production would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cancelnotify.mail.render import Renderer
from cancelnotify.preview.service import RendererSource, Workbench
from cancelnotify.settings import Settings

MakeWorkbench = Callable[..., Workbench]


def workbench_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "shop_name": "Example Shop",
        "shop_url": "https://shop.example",
        "mail_from": "Example Shop <orders@shop.example>",
        "reply_to": "help@shop.example",
        "support_email": "help@shop.example",
        "support_phone": "+44 20 7946 0000",
        "public_base_url": "https://notify.shop.example",
        "link_signing_key": "test-signing-key",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_workbench() -> MakeWorkbench:
    def make(
        templates_dir: Path | None = None, *, live: bool = False, **overrides: Any
    ) -> Workbench:
        settings = workbench_settings(templates_dir=templates_dir, **overrides)
        return Workbench(settings, RendererSource(settings, Renderer(settings), live=live))

    return make


@pytest.fixture(scope="session")
def default_workbench() -> Workbench:
    settings = workbench_settings()
    return Workbench(settings, RendererSource(settings, Renderer(settings), live=False))


def write(root: Path, name: str, content: str) -> Path:
    """Write one template override under a TEMPLATES_DIR."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path
