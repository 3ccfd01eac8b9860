"""Golden files: a template change shows up as a readable diff. UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cancelnotify.mail.render import Renderer

from .conftest import NOTIFICATION_ID, REFERENCE, MakeEvent

GOLDEN = Path(__file__).parent / "golden"

SCENARIOS: dict[str, tuple[str, dict[str, Any]]] = {
    "en_out_of_stock_card": ("order_cancelled", {}),
    "de_fraud_suspected_none": (
        "order_cancelled",
        {
            "customer.locale": "de-DE",
            "cancellation.reason": "fraud_suspected",
            "cancellation.note": None,
            "refund.method": "none",
        },
    ),
    "es_mx_paypal_no_first_name": (
        "order_cancelled",
        {
            "customer.locale": "es-MX",
            "customer.first_name": None,
            "cancellation.reason": "shipping_unavailable",
            "cancellation.note": None,
            "order.currency": "MXN",
            "order.items": [
                {"name": "Tenis de montaña", "quantity": 2, "unit_price": "1499.00"},
                {"name": "Calcetines", "quantity": 3, "unit_price": "99.50"},
            ],
            "order.total": "3296.50",
            "refund": {"amount": "3296.50", "currency": "MXN", "method": "paypal"},
            "alternatives": [],
        },
    ),
    "fr_refund_completed_store_credit": (
        "refund_completed",
        {
            "customer.locale": "fr-FR",
            "refund": {"amount": "129.90", "currency": "EUR", "method": "store_credit"},
        },
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(renderer: Renderer, make_event: MakeEvent, name: str) -> None:
    template, changes = SCENARIOS[name]
    email = renderer.render(
        make_event(**changes),
        notification_id=NOTIFICATION_ID,
        reference=REFERENCE,
        template=template,
    )
    outputs = {
        f"{name}.txt": f"Subject: {email.subject}\n\n{email.text}",
        f"{name}.html": email.html if email.html.endswith("\n") else email.html + "\n",
    }
    for filename, actual in outputs.items():
        path = GOLDEN / filename
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.write_text(actual, encoding="utf-8")
            continue
        assert path.is_file(), f"{path} missing; run UPDATE_GOLDEN=1 pytest tests/mail"
        assert actual == path.read_text(encoding="utf-8"), (
            f"{filename} changed; review the diff and run UPDATE_GOLDEN=1 pytest tests/mail"
        )
