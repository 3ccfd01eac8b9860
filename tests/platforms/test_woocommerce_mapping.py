"""WooCommerce v3 order body -> canonical CancellationEventV1 (or None when not cancelled)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod
from cancelnotify.schemas.woocommerce import woocommerce_refund_method, woocommerce_to_event

Loader = Callable[[str], dict[str, Any]]
RECEIVED = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
PAID = "woocommerce_order_cancelled_paid.json"
UNPAID = "woocommerce_order_cancelled_unpaid.json"


def _map(body: dict[str, Any] | bytes, **kwargs: Any) -> CancellationEventV1 | None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    args: dict[str, Any] = {
        "delivery_id": "7e1f0c8b2d4a6e9f",
        "source_url": "https://shop.example/",
        "received_at": RECEIVED,
    }
    args.update(kwargs)
    return woocommerce_to_event(raw, **args)


def _event(body: dict[str, Any] | bytes, **kwargs: Any) -> CancellationEventV1:
    event = _map(body, **kwargs)
    assert event is not None
    return event


@pytest.fixture
def order(own_fixture: Loader) -> dict[str, Any]:
    return own_fixture(PAID)


class TestWoocommerceToEvent:
    def test_documented_paid_order_maps_every_field(self, own_raw: Callable[[str], bytes]) -> None:
        # Raw bytes as wp_json_encode writes them (escaped slashes, \u escapes).
        event = _event(own_raw(PAID))

        assert event.event_id == "woo:1042:2026-11-26T09:59:58Z"
        assert event.occurred_at == datetime(2026, 11, 26, 9, 59, 58, tzinfo=UTC)
        assert event.order.id == "1042"
        assert event.order.number == "#1042"
        assert event.order.placed_at == datetime(2026, 11, 24, 18, 3, 11, tzinfo=UTC)
        assert (event.order.currency, event.order.total) == ("EUR", Decimal("40.00"))
        assert [(i.sku, i.name, i.quantity, i.unit_price) for i in event.order.items] == [
            ("MUG-SET", "Kaffeebecher & Untersetzer", 3, Decimal("10.00")),
            (None, "Filterpapier (100 Stück)", 3, Decimal("3.33")),
        ]
        assert event.order.status_url is None
        assert event.customer.email == "jorg@example.de"
        assert (event.customer.first_name, event.customer.last_name) == ("Jörg", "Müller")
        assert event.customer.locale == "de"
        assert event.customer.phone == "+49 30 1234567"
        assert event.cancellation.reason is Reason.other
        assert event.cancellation.note is None  # customer_note is the buyer's own words
        assert event.cancellation.cancelled_at == event.occurred_at
        assert event.refund is not None
        assert event.refund.model_dump(exclude_none=True) == {
            "amount": "40.00",
            "currency": "EUR",
            "method": RefundMethod.card,
            "status": "pending",
        }
        assert event.model_dump(mode="json")["origin"] == {
            "platform": "woocommerce",
            "source_url": "https://shop.example/",
            "delivery_id": "7e1f0c8b2d4a6e9f",
        }

    def test_unpaid_order_was_not_charged(self, own_fixture: Loader) -> None:
        event = _event(own_fixture(UNPAID))
        assert event.refund is not None
        assert event.refund.model_dump(exclude_none=True) == {
            "amount": "0.00",
            "currency": "GBP",
            "method": RefundMethod.none,
            "status": "completed",
        }
        assert event.customer.last_name == "O'Neil"
        assert event.customer.phone is None  # Woo sends "" for no phone
        assert event.order.items[0].unit_price == Decimal("6.00")

    @pytest.mark.parametrize(
        "status",
        ["pending", "processing", "on-hold", "completed", "refunded", "failed", "trash", None],
    )
    def test_other_statuses_are_ignored(self, order: dict[str, Any], status: str | None) -> None:
        order["status"] = status
        del order["billing"]  # not even looked at
        assert _map(order) is None

    def test_ignored_status_needs_no_other_field(self) -> None:
        assert _map(b'{"id": 1, "status": "processing"}') is None


class TestRefundMethod:
    @pytest.mark.parametrize(
        ("payment_method", "title", "method"),
        [
            ("stripe", "Credit Card (Stripe)", RefundMethod.card),
            ("woocommerce_payments", "Credit card / debit card", RefundMethod.card),
            ("paypal", "PayPal", RefundMethod.paypal),
            ("ppec_paypal", "PayPal Checkout", RefundMethod.paypal),
            ("ppcp-gateway", "PayPal", RefundMethod.paypal),
            ("ppcp-credit-card-gateway", "Debit & Credit Cards", RefundMethod.card),
            ("bacs", "Direct bank transfer", RefundMethod.bank_transfer),
            ("cheque", "Check payments", RefundMethod.bank_transfer),
            ("cod", "Cash on delivery", RefundMethod.bank_transfer),
            ("pw_gift_card", "Gift card", RefundMethod.gift_card),
            ("mollie_wc_gateway_ideal", "iDEAL", RefundMethod.bank_transfer),
            ("mollie_wc_gateway_creditcard", "Credit card", RefundMethod.card),
            ("my_wallet", "Store credit", RefundMethod.store_credit),
            ("acme_pay", "Acme Pay", RefundMethod.card),
            (None, None, RefundMethod.card),
        ],
    )
    def test_paid_gateway(
        self, order: dict[str, Any], payment_method: str | None, title: str | None, method: str
    ) -> None:
        order["payment_method"] = payment_method
        order["payment_method_title"] = title
        event = _event(order)
        assert event.refund is not None
        assert event.refund.method is method
        assert woocommerce_refund_method(payment_method, title) is method

    @pytest.mark.parametrize("payment_method", ["cod", "cheque", "bacs", "stripe"])
    def test_never_paid_is_none_whatever_the_gateway(
        self, order: dict[str, Any], payment_method: str
    ) -> None:
        order["payment_method"] = payment_method
        order["date_paid"] = None
        order["date_paid_gmt"] = None
        event = _event(order)
        assert event.refund is not None
        assert event.refund.method is RefundMethod.none

    def test_free_order_is_none(self, order: dict[str, Any]) -> None:
        order["total"] = "0.00"
        event = _event(order)
        assert event.refund is not None
        assert event.refund.method is RefundMethod.none

    def test_recorded_refunds_are_the_amount(self, order: dict[str, Any]) -> None:
        order["refunds"] = [
            {"id": 1, "reason": "", "total": "-30.00"},
            {"id": 2, "reason": "", "total": "-10.00"},
        ]
        event = _event(order)
        assert event.refund is not None
        assert (event.refund.amount, event.refund.status) == (Decimal("40.00"), "initiated")


class TestEventId:
    def test_resent_body_dedupes_whatever_the_delivery_id(self, order: dict[str, Any]) -> None:
        first = _event(order, delivery_id="a" * 32)
        retry = _event(order, delivery_id="b" * 32, received_at=datetime(2026, 11, 27, tzinfo=UTC))
        assert first.event_id == retry.event_id

    def test_a_later_update_is_a_new_event(self, order: dict[str, Any]) -> None:
        first = _event(order)
        order["date_modified_gmt"] = "2026-11-26T10:05:00"
        assert _event(order).event_id != first.event_id

    def test_without_modification_time_identical_bodies_share_an_id(
        self, order: dict[str, Any]
    ) -> None:
        del order["date_modified_gmt"]
        raw = json.dumps(order).encode()
        event = _event(raw)
        assert event.event_id.startswith("woo:1042:sha256:")
        assert _event(raw, delivery_id="other").event_id == event.event_id
        assert event.occurred_at == RECEIVED


class TestOrderDetails:
    def test_numeric_number_and_custom_numbers(self, order: dict[str, Any]) -> None:
        order["number"] = 1042
        assert _event(order).order.number == "#1042"
        order["number"] = "WC-2026-0042"
        assert _event(order).order.number == "#WC-2026-0042"
        order["number"] = ""
        assert _event(order).order.number == "#1042"

    def test_price_as_string_and_missing_price_from_total(self, order: dict[str, Any]) -> None:
        order["line_items"][0]["price"] = "9.5"
        del order["line_items"][1]["price"]
        items = _event(order).order.items
        assert [i.unit_price for i in items] == [Decimal("9.50"), Decimal("3.33")]

    def test_locale_meta_variants(self, order: dict[str, Any]) -> None:
        order["meta_data"] = [{"id": 1, "key": "trp_language", "value": "pt_BR"}]
        assert _event(order).customer.locale == "pt-BR"
        order["meta_data"] = [{"id": 1, "key": "wpml_language", "value": ["not", "a", "tag"]}]
        assert _event(order).customer.locale is None
        order["meta_data"] = None
        assert _event(order).customer.locale is None


class TestInvalidBodies:
    def test_no_billing_email_names_the_field(self, order: dict[str, Any]) -> None:
        order["billing"]["email"] = ""
        with pytest.raises(ValidationError) as caught:
            _map(order)
        [error] = caught.value.errors()
        assert error["loc"] == ("billing", "email")

    def test_no_billing_at_all(self, order: dict[str, Any]) -> None:
        del order["billing"]
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("billing", "email")

    def test_missing_currency_names_the_field(self, order: dict[str, Any]) -> None:
        del order["currency"]
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("currency",)

    def test_bad_modified_date_names_the_field(self, order: dict[str, Any]) -> None:
        order["date_modified_gmt"] = "yesterday"
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("date_modified_gmt",)

    @pytest.mark.parametrize("raw", [b"", b"webhook_id=12", b"[]", b"null"])
    def test_not_a_json_object(self, raw: bytes) -> None:
        with pytest.raises(ValidationError):
            _map(raw)
