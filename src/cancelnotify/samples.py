"""Sample canonical events: the `dev` demo, `send-sample`, tests and benchmarks start from these."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

_BASE: dict[str, Any] = {
    "event_id": "evt_sample",
    "occurred_at": "2026-11-26T10:00:00Z",
    "order": {
        "id": "1001",
        "number": "#1001",
        "placed_at": "2026-11-24T18:12:00Z",
        "currency": "EUR",
        "total": "129.90",
        "items": [
            {
                "sku": "TS-42",
                "name": "Trail shoe",
                "quantity": 1,
                "unit_price": "129.90",
                "image_url": "https://shop.example/img/trail-shoe.jpg",
                "url": "https://shop.example/p/trail-shoe",
            }
        ],
        "status_url": "https://shop.example/orders/1001",
    },
    "customer": {
        "email": "ana@example.com",
        "first_name": "Ana",
        "last_name": "García",
        "locale": "es-ES",
        "phone": "+34 600 000 000",
        "vip": False,
    },
    "cancellation": {
        "reason": "out_of_stock",
        "note": "The supplier could not deliver this size in time.",
        "initiated_by": "merchant",
        "cancelled_at": "2026-11-26T09:59:58Z",
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
            "url": "https://shop.example/p/trail-shoe-v2",
            "image_url": "https://shop.example/img/trail-shoe-v2.jpg",
            "price": "119.90",
        }
    ],
    "reorder_url": "https://shop.example/cart/reorder/1001",
}


def sample_event(**changes: Any) -> dict[str, Any]:
    """A valid canonical event as a dict; keyword args replace top-level keys.

    `order_id="42"` and `email="x@example.com"` are shortcuts for the nested fields, and the
    event id is fresh unless given.
    """
    event = copy.deepcopy(_BASE)
    event["event_id"] = f"evt_{uuid.uuid4().hex[:16]}"
    event["occurred_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if "order_id" in changes:
        oid = str(changes.pop("order_id"))
        event["order"]["id"] = oid
        event["order"]["number"] = f"#{oid}"
    if "email" in changes:
        event["customer"]["email"] = changes.pop("email")
    if "reason" in changes:
        event["cancellation"]["reason"] = changes.pop("reason")
    if "locale" in changes:
        event["customer"]["locale"] = changes.pop("locale")
    event.update(changes)
    return event
