"""Fixtures for the email tests: settings, one shared Renderer, an event factory."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from cancelnotify.mail.render import Renderer
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

NOTIFICATION_ID = uuid.UUID("8b0e6f4c-2a71-4d0e-9a53-0c1d2e3f4a5b")
REFERENCE = "CN-7F3K2Q"

BASE_EVENT: dict[str, Any] = {
    "event_id": "evt_123",
    "occurred_at": "2026-06-09T10:00:00Z",
    "order": {
        "id": "1001",
        "number": "#1001",
        "placed_at": "2026-06-05T08:30:00+02:00",
        "currency": "EUR",
        "total": "129.90",
        "items": [
            {
                "sku": "A1",
                "name": "Trail shoe",
                "quantity": 1,
                "unit_price": "129.90",
                "image_url": "https://cdn.shop.example/a1.jpg",
                "url": "https://shop.example/p/a1",
            }
        ],
        "status_url": "https://shop.example/orders/1001",
    },
    "customer": {
        "email": "ana@example.com",
        "first_name": "Ana",
        "last_name": "García",
        "locale": "en-GB",
    },
    "cancellation": {
        "reason": "out_of_stock",
        "note": "The supplier stopped making this colour.",
        "initiated_by": "merchant",
        "cancelled_at": "2026-06-09T09:59:58Z",
    },
    "refund": {
        "amount": "129.90",
        "currency": "EUR",
        "method": "card",
        "card_last4": "4242",
        "card_brand": "Visa",
        "status": "pending",
    },
    "alternatives": [
        {
            "name": "Trail shoe v2",
            "url": "https://shop.example/p/a2",
            "image_url": "https://cdn.shop.example/a2.jpg",
            "price": "119.90",
        },
        {"name": "Road shoe", "url": "https://shop.example/p/a3", "price": "99.00"},
    ],
    "reorder_url": "https://shop.example/cart/reorder/1001",
}

MakeEvent = Callable[..., CancellationEventV1]


def make_settings(**overrides: Any) -> Settings:
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


def build_event(**changes: Any) -> CancellationEventV1:
    """The base event with dotted-path changes, e.g. `**{"customer.first_name": None}`."""
    data = copy.deepcopy(BASE_EVENT)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        target = data
        for key in parents:
            target = target[key]
        if value is _DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return CancellationEventV1.model_validate(data)


_DELETE = object()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def renderer(settings: Settings) -> Renderer:
    return Renderer(settings)


@pytest.fixture
def make_event() -> MakeEvent:
    return build_event


@pytest.fixture
def delete() -> object:
    return _DELETE
