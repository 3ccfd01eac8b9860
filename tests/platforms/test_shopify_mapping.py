"""Shopify order body -> canonical CancellationEventV1."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod
from cancelnotify.schemas.shopify import (
    SHOPIFY_CANCELLED_TOPIC,
    shopify_refund_method,
    shopify_to_event,
)

Loader = Callable[[str], dict[str, Any]]
RECEIVED = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
FIXTURE = "shopify_order_cancelled_refunded.json"


def _map(body: dict[str, Any] | bytes, **kwargs: Any) -> CancellationEventV1:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    args: dict[str, Any] = {
        "webhook_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "shop_domain": "example.myshopify.com",
        "received_at": RECEIVED,
    }
    args.update(kwargs)
    return shopify_to_event(raw, **args)


@pytest.fixture
def order(own_fixture: Loader) -> dict[str, Any]:
    return own_fixture(FIXTURE)


def _unrefunded(order: dict[str, Any], financial_status: str) -> dict[str, Any]:
    order["refunds"] = []
    order["financial_status"] = financial_status
    return order


class TestShopifyToEvent:
    def test_documented_refunded_order_maps_every_field(self, order: dict[str, Any]) -> None:
        event = _map(order)

        assert event.event_id == "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        assert event.occurred_at == datetime(2026, 11, 26, 9, 59, 58, tzinfo=UTC)
        assert event.order.id == "5904209821842719743"  # > 2**53, kept exact
        assert event.order.number == "#1001"
        assert event.order.placed_at == datetime(2026, 11, 24, 17, 3, 11, tzinfo=UTC)
        assert event.order.currency == "EUR"
        assert event.order.total == Decimal("129.90")
        assert event.order.status_url == (
            "https://shop.example/59042098/orders/7c1d3a9e5b/authenticate?key=e7f0c2"
        )
        [item] = event.order.items
        assert (item.sku, item.name, item.quantity, item.unit_price) == (
            "TS-42",
            "Trail shoe - 42",
            1,
            Decimal("129.90"),
        )
        assert event.customer.email == "ana@example.com"
        assert (event.customer.first_name, event.customer.last_name) == ("Ana", "García")
        assert event.customer.locale == "es-ES"
        assert event.customer.phone == "+34600111222"
        assert event.cancellation.reason is Reason.out_of_stock
        assert event.cancellation.initiated_by == "merchant"
        assert event.cancellation.note is None  # the order note is not for the customer
        assert event.refund is not None
        assert event.refund.model_dump(exclude_none=True) == {
            "amount": "129.90",
            "currency": "EUR",
            "method": RefundMethod.card,
            "card_last4": "4242",
            "card_brand": "Visa",
            "status": "initiated",
        }

    def test_money_serialises_as_decimal_strings(self, order: dict[str, Any]) -> None:
        dumped = _map(order).model_dump(mode="json")
        assert dumped["order"]["total"] == "129.90"
        assert dumped["order"]["items"][0]["unit_price"] == "129.90"
        assert dumped["refund"]["amount"] == "129.90"
        assert dumped["origin"]["platform"] == "shopify"

    def test_the_result_round_trips_through_the_canonical_schema(
        self, order: dict[str, Any]
    ) -> None:
        event = _map(order)
        again = CancellationEventV1.model_validate_json(event.model_dump_json())
        assert again == event

    def test_topic_constant(self) -> None:
        assert SHOPIFY_CANCELLED_TOPIC == "orders/cancelled"


class TestReasons:
    @pytest.mark.parametrize(
        ("cancel_reason", "reason", "initiated_by"),
        [
            ("customer", Reason.customer_request, "customer"),
            ("fraud", Reason.fraud_suspected, "merchant"),
            ("inventory", Reason.out_of_stock, "merchant"),
            ("declined", Reason.payment_declined, "system"),
            ("staff", Reason.other, "merchant"),
            ("other", Reason.other, "merchant"),
            ("CUSTOMER", Reason.customer_request, "customer"),  # GraphQL spelling
            (None, Reason.other, None),
            ("something_new", Reason.other, None),
        ],
    )
    def test_cancel_reason(
        self,
        order: dict[str, Any],
        cancel_reason: str | None,
        reason: Reason,
        initiated_by: str | None,
    ) -> None:
        order["cancel_reason"] = cancel_reason
        event = _map(order)
        assert event.cancellation.reason is reason
        assert event.cancellation.initiated_by == initiated_by


class TestRefunds:
    @pytest.mark.parametrize(
        ("gateway", "method"),
        [
            ("shopify_payments", RefundMethod.card),
            ("bogus", RefundMethod.card),
            ("Credit Card", RefundMethod.card),
            ("stripe", RefundMethod.card),
            ("paypal", RefundMethod.paypal),
            ("PayPal Express Checkout", RefundMethod.paypal),
            ("gift_card", RefundMethod.gift_card),
            ("shopify_store_credit", RefundMethod.store_credit),
            ("manual", RefundMethod.bank_transfer),
            ("Bank Deposit", RefundMethod.bank_transfer),
            ("Cash on Delivery (COD)", RefundMethod.bank_transfer),
            ("some_new_card_processor", RefundMethod.card),
        ],
    )
    def test_refund_transaction_gateway(
        self, order: dict[str, Any], gateway: str, method: RefundMethod
    ) -> None:
        order["refunds"][0]["transactions"][0]["gateway"] = gateway
        event = _map(order)
        assert event.refund is not None
        assert event.refund.method is method
        assert event.refund.amount == Decimal("129.90")
        # Card digits are only told for a card refund.
        assert (event.refund.card_last4 == "4242") is (method is RefundMethod.card)

    def test_gateway_mapping_function(self) -> None:
        assert shopify_refund_method(None) is RefundMethod.card
        assert shopify_refund_method("paypal_express") is RefundMethod.paypal

    @pytest.mark.parametrize("financial_status", ["voided", "pending", "authorized", "expired"])
    def test_not_charged_means_method_none(
        self, order: dict[str, Any], financial_status: str
    ) -> None:
        event = _map(_unrefunded(order, financial_status))
        assert event.refund is not None
        assert event.refund.method is RefundMethod.none
        assert event.refund.amount == Decimal("0.00")
        assert event.refund.status == "completed"

    def test_free_order_means_method_none(self, order: dict[str, Any]) -> None:
        order = _unrefunded(order, "paid")
        order["total_price"] = "0.00"
        order.pop("total_price_set")
        event = _map(order)
        assert event.refund is not None
        assert event.refund.method is RefundMethod.none

    def test_refunded_without_transactions_uses_total_and_order_gateway(
        self, order: dict[str, Any]
    ) -> None:
        order = _unrefunded(order, "refunded")
        order["payment_gateway_names"] = ["paypal"]
        event = _map(order)
        assert event.refund is not None
        assert (event.refund.amount, event.refund.method, event.refund.status) == (
            Decimal("129.90"),
            RefundMethod.paypal,
            "initiated",
        )

    def test_paid_and_not_yet_refunded_is_pending_total(self, order: dict[str, Any]) -> None:
        event = _map(_unrefunded(order, "paid"))
        assert event.refund is not None
        assert (event.refund.amount, event.refund.status) == (Decimal("129.90"), "pending")

    def test_partially_paid_owes_what_was_paid(self, order: dict[str, Any]) -> None:
        order = _unrefunded(order, "partially_paid")
        order["total_outstanding"] = "29.90"
        event = _map(order)
        assert event.refund is not None
        assert event.refund.amount == Decimal("100.00")

    def test_partially_refunded_without_transactions_promises_no_amount(
        self, order: dict[str, Any]
    ) -> None:
        assert _map(_unrefunded(order, "partially_refunded")).refund is None

    def test_partial_refund_sums_successful_transactions_only(self, order: dict[str, Any]) -> None:
        order["financial_status"] = "partially_refunded"
        first = order["refunds"][0]["transactions"][0]
        first["amount"] = "50.00"
        order["refunds"].append(
            {
                "id": 2,
                "transactions": [
                    {**first, "id": 3, "amount": "20.00"},
                    {**first, "id": 4, "amount": "99.00", "status": "failure"},
                ],
            }
        )
        event = _map(order)
        assert event.refund is not None
        assert (event.refund.amount, event.refund.status) == (Decimal("70.00"), "initiated")

    def test_pending_refund_transaction(self, order: dict[str, Any]) -> None:
        order["refunds"][0]["transactions"][0]["status"] = "pending"
        event = _map(order)
        assert event.refund is not None
        assert event.refund.status == "pending"

    def test_card_digits_fall_back_to_order_payment_details(self, order: dict[str, Any]) -> None:
        order = _unrefunded(order, "refunded")
        order["payment_details"] = {
            "credit_card_number": "•••• •••• •••• 1881",
            "credit_card_company": "Mastercard",
        }
        event = _map(order)
        assert event.refund is not None
        assert (event.refund.card_last4, event.refund.card_brand) == ("1881", "Mastercard")

    def test_split_tender_prefers_the_non_gift_card_gateway(self, order: dict[str, Any]) -> None:
        order = _unrefunded(order, "refunded")
        order["payment_gateway_names"] = ["gift_card", "shopify_payments"]
        event = _map(order)
        assert event.refund is not None
        assert event.refund.method is RefundMethod.card

    def test_unknown_financial_status_gives_no_refund(self, order: dict[str, Any]) -> None:
        order = _unrefunded(order, "paid")
        del order["financial_status"]
        assert _map(order).refund is None


class TestCurrencies:
    def test_presentment_currency_is_what_the_customer_sees(self, order: dict[str, Any]) -> None:
        order["currency"] = "USD"  # shop currency
        order["presentment_currency"] = "EUR"
        order["total_price"] = "140.00"
        order["total_price_set"]["shop_money"] = {"amount": "140.00", "currency_code": "USD"}
        order["line_items"][0]["price"] = "140.00"
        event = _map(order)
        assert (event.order.currency, event.order.total) == ("EUR", Decimal("129.90"))
        assert event.order.items[0].unit_price == Decimal("129.90")
        assert event.refund is not None
        assert (event.refund.currency, event.refund.amount) == ("EUR", Decimal("129.90"))

    def test_line_price_missing_in_presentment_is_left_out(self, order: dict[str, Any]) -> None:
        order["currency"] = "USD"
        order["presentment_currency"] = "EUR"
        del order["line_items"][0]["price_set"]
        assert _map(order).order.items[0].unit_price is None

    def test_numeric_prices_become_decimal_strings(self, order: dict[str, Any]) -> None:
        order["total_price"] = 129.9
        order.pop("total_price_set")
        order["line_items"][0]["price"] = 0.1
        event = _map(order)
        assert event.order.total == Decimal("129.9")
        assert event.order.items[0].unit_price == Decimal("0.1")


class TestCustomer:
    def test_email_falls_back_to_contact_email_then_customer(self, order: dict[str, Any]) -> None:
        order["email"] = ""
        order["contact_email"] = "contact@example.com"
        assert _map(order).customer.email == "contact@example.com"
        order["contact_email"] = None
        order["customer"]["email"] = "customer@example.com"
        assert _map(order).customer.email == "customer@example.com"

    def test_names_fall_back_to_billing_address(self, order: dict[str, Any]) -> None:
        order["customer"] = None
        order["billing_address"]["first_name"] = "Bea"
        event = _map(order)
        assert (event.customer.first_name, event.customer.last_name) == ("Bea", "García")

    def test_locale_from_customer_when_order_has_none(self, order: dict[str, Any]) -> None:
        order["customer_locale"] = None
        order["customer"]["locale"] = "pt_BR"
        assert _map(order).customer.locale == "pt-BR"

    def test_nonsense_locale_is_dropped(self, order: dict[str, Any]) -> None:
        order["customer_locale"] = "<script>"
        assert _map(order).customer.locale is None

    def test_long_names_are_clipped_not_rejected(self, order: dict[str, Any]) -> None:
        order["customer"]["first_name"] = "A" * 255
        order["line_items"][0]["name"] = "B" * 255
        event = _map(order)
        assert event.customer.first_name == "A" * 100
        assert event.order.items[0].name == "B" * 200


class TestOrderDetails:
    def test_event_id_prefers_x_shopify_event_id(self, order: dict[str, Any]) -> None:
        event = _map(order, event_id="e4b0c2a6-1d2e-4f3a-9b8c-7d6e5f4a3b2c")
        assert event.event_id == "shopify:e4b0c2a6-1d2e-4f3a-9b8c-7d6e5f4a3b2c"

    def test_same_delivery_maps_to_the_same_event(self, order: dict[str, Any]) -> None:
        later = datetime(2026, 11, 27, tzinfo=UTC)
        assert _map(order) == _map(order, received_at=later)

    def test_received_at_is_the_event_time_without_cancelled_at(
        self, order: dict[str, Any]
    ) -> None:
        order["cancelled_at"] = None
        event = _map(order)
        assert event.occurred_at == RECEIVED
        assert event.cancelled_at == RECEIVED

    def test_order_number_falls_back_to_order_number(self, order: dict[str, Any]) -> None:
        del order["name"]
        assert _map(order).order.number == "#1001"

    def test_item_title_when_name_is_missing(self, order: dict[str, Any]) -> None:
        del order["line_items"][0]["name"]
        assert _map(order).order.items[0].name == "Trail shoe"

    def test_removed_lines_are_skipped(self, order: dict[str, Any]) -> None:
        order["line_items"].append({**order["line_items"][0], "quantity": 0})
        assert len(_map(order).order.items) == 1

    def test_invalid_status_url_is_dropped(self, order: dict[str, Any]) -> None:
        order["order_status_url"] = "javascript:alert(1)"
        assert _map(order).order.status_url is None

    def test_unknown_fields_are_ignored(self, order: dict[str, Any]) -> None:
        order["brand_new_field"] = {"nested": [1, 2, 3]}
        assert _map(order).order.id == "5904209821842719743"


class TestInvalidBodies:
    def test_no_email_anywhere_names_the_field(self, order: dict[str, Any]) -> None:
        order["email"] = None
        order["contact_email"] = ""
        order["customer"]["email"] = None
        with pytest.raises(ValidationError) as caught:
            _map(order)
        [error] = caught.value.errors()
        assert error["loc"] == ("email",)
        assert "customer.email" in error["msg"]

    def test_missing_currency_names_the_field(self, order: dict[str, Any]) -> None:
        del order["currency"]
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("currency",)

    def test_missing_id_names_the_field(self, order: dict[str, Any]) -> None:
        del order["id"]
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("id",)

    def test_malformed_price_names_the_line(self, order: dict[str, Any]) -> None:
        order["line_items"][0]["price"] = "twelve"
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("line_items", 0, "price")

    def test_invalid_email_is_rejected_by_the_canonical_schema(self, order: dict[str, Any]) -> None:
        order["email"] = "not-an-email"
        with pytest.raises(ValidationError) as caught:
            _map(order)
        assert caught.value.errors()[0]["loc"] == ("customer", "email")

    @pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff\xfe"])
    def test_not_a_json_object(self, raw: bytes) -> None:
        with pytest.raises(ValidationError):
            _map(raw)

    def test_naive_received_at_is_refused(self, order: dict[str, Any]) -> None:
        order["cancelled_at"] = None
        with pytest.raises(ValidationError):
            _map(order, received_at=datetime(2026, 11, 26, 10, 0))  # noqa: DTZ001
