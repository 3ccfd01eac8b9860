"""Replays real third-party payloads and published signature vectors from ../shared/fixtures.

The files are read in place (never copied into this repository) and as raw bytes; every test
skips cleanly when the folder is absent. Provenance of each file: SOURCES.md next to them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cancelnotify.platform_signatures import (
    shopify_signature,
    verify_shopify,
    verify_woocommerce,
    woocommerce_signature,
)
from cancelnotify.schemas.event import Reason, RefundMethod
from cancelnotify.schemas.shopify import shopify_to_event
from cancelnotify.schemas.woocommerce import woocommerce_to_event

RECEIVED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
LARAVEL = "shopify-orders-cancelled.laravel-shopify-fixture.json"
TIKI = "shopify-orders-cancelled.tiki-raw-body.json"
WOO_CANCELLED = "woocommerce-order-cancelled.CONSTRUCTED.json"
WOO_PROCESSING = "woocommerce-order.docs-example.json"


def _shopify_vectors(folder: Path) -> dict[str, Any]:
    vectors: dict[str, Any] = json.loads((folder / "shopify-hmac-vectors.json").read_bytes())
    return vectors


class TestShopifyPublishedVectors:
    @pytest.mark.parametrize("name", ["laravel_shopify_fixture", "tiki_raw_body"])
    def test_vector_verifies_over_the_raw_file(self, shared_fixtures: Path, name: str) -> None:
        [vector] = [v for v in _shopify_vectors(shared_fixtures)["vectors"] if v["name"] == name]
        body = (shared_fixtures / vector["body_file"]).read_bytes()
        assert len(body) == vector["body_bytes"]  # nothing normalised the file
        secret = vector["secret"].encode()
        expected = vector["expected_x_shopify_hmac_sha256"]

        assert shopify_signature(body, secret) == expected
        assert verify_shopify(body, expected, [secret])
        assert verify_shopify(body, expected, [b"rotated-out-secret", secret])

    def test_stripping_the_trailing_newline_breaks_it(self, shared_fixtures: Path) -> None:
        vectors = _shopify_vectors(shared_fixtures)
        [case] = [
            c
            for c in vectors["negative_cases"]
            if c["name"] == "laravel_fixture_trailing_newline_stripped"
        ]
        body = (shared_fixtures / LARAVEL).read_bytes()
        stripped = body.removesuffix(b"\n")
        secret = case["secret"].encode()
        published = "hvTE9wpDzMcDnPEuHWvYZ58ElKn5vHs0LomurfNIuUc="

        assert shopify_signature(stripped, secret) == case["hmac_of_stripped_body"]
        assert verify_shopify(body, published, [secret])
        assert not verify_shopify(stripped, published, [secret])

    def test_header_checked_with_the_wrong_secret(self, shared_fixtures: Path) -> None:
        [case] = [
            c
            for c in _shopify_vectors(shared_fixtures)["negative_cases"]
            if c["name"] == "header_with_wrong_secret"
        ]
        body = (shared_fixtures / case["body_file"]).read_bytes()
        assert not verify_shopify(
            body, case["header_sent"], [case["secret_used_by_receiver"].encode()]
        )

    def test_reserialised_body_fails(self, shared_fixtures: Path) -> None:
        [vector] = [
            v for v in _shopify_vectors(shared_fixtures)["vectors"] if v["name"] == "tiki_raw_body"
        ]
        body = (shared_fixtures / TIKI).read_bytes()
        reserialised = json.dumps(json.loads(body), indent=2).encode()
        assert reserialised != body  # "\/" became "/"
        assert not verify_shopify(
            reserialised, vector["expected_x_shopify_hmac_sha256"], [vector["secret"].encode()]
        )

    @pytest.mark.parametrize("position", [0, 2000, -1])
    def test_flipped_byte_in_a_real_body(self, shared_fixtures: Path, position: int) -> None:
        body = bytearray((shared_fixtures / TIKI).read_bytes())
        body[position] ^= 0x20
        assert not verify_shopify(
            bytes(body),
            "t3OdIH21X6GhKDd2WC3sxKGIpxDEjCuMQyqkhiGpDzI=",
            [b"c12092f264d049ffb681e7b27ac41015"],
        )


class TestShopifyRealPayloads:
    def test_laravel_sample_order(self, shared_fixtures: Path) -> None:
        event = shopify_to_event(
            (shared_fixtures / LARAVEL).read_bytes(),
            webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            shop_domain="example.myshopify.com",
            received_at=RECEIVED,
        )
        assert event.event_id == "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
        assert event.order.id == "820982911946154508"  # > 2**53, exact
        assert event.order.number == "#9999"
        assert (event.order.currency, event.order.total) == ("USD", Decimal("57.98"))
        assert [(i.sku, i.name, i.unit_price) for i in event.order.items] == [
            ("706405908216", "Real Madrid Dad Hat", Decimal("24.99")),
            ("706405907431", "Sporting Clube de Portugal Trucker Hat", Decimal("27.99")),
        ]
        assert event.order.status_url is None
        assert event.customer.email == "jon@doe.ca"  # order email before customer.email
        assert (event.customer.first_name, event.customer.last_name) == ("John", "Smith")
        assert event.customer.locale is None
        assert event.cancellation.reason is Reason.customer_request
        assert event.cancellation.initiated_by == "customer"
        assert event.occurred_at.isoformat() == "2017-07-17T13:44:09-04:00"
        assert event.refund is not None
        assert (event.refund.method, event.refund.amount) == (RefundMethod.none, Decimal(0))
        assert event.model_dump(mode="json")["origin"]["test"] is True

    def test_tiki_raw_body(self, shared_fixtures: Path) -> None:
        event = shopify_to_event(
            (shared_fixtures / TIKI).read_bytes(),
            webhook_id="d8ad3e4f-0000-4000-8000-000000000001",
            shop_domain="jsmith.myshopify.com",
            received_at=RECEIVED,
            event_id="5f8d3e4f-0000-4000-8000-000000000002",
        )
        assert event.event_id == "shopify:5f8d3e4f-0000-4000-8000-000000000002"
        assert event.order.id == "820982911946154508"
        assert event.order.number == "#9999"
        assert (event.order.currency, event.order.total) == ("USD", Decimal("403.00"))
        assert [(i.name, i.quantity, i.unit_price) for i in event.order.items] == [
            ("IPod Nano - 8GB", 1, Decimal("199.00")),
            ("IPod Nano - 8GB", 1, Decimal("199.00")),
        ]
        assert event.order.status_url == (
            "https://jsmith.myshopify.com/548380009/orders/123456abcd/authenticate?key=abcdefg"
        )
        assert event.customer.email == "jon@example.com"
        assert event.customer.locale == "en"
        assert event.cancellation.reason is Reason.customer_request
        assert event.cancellation.cancelled_at is not None
        assert event.cancellation.cancelled_at.isoformat() == "2021-12-31T19:00:00-05:00"
        assert event.refund is not None
        assert event.refund.method is RefundMethod.none  # financial_status "voided"


class TestWoocommerceRealPayloads:
    def test_constructed_cancelled_order(self, shared_fixtures: Path) -> None:
        event = woocommerce_to_event(
            (shared_fixtures / WOO_CANCELLED).read_bytes(),
            delivery_id="3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c",
            source_url="https://example.com/",
            received_at=RECEIVED,
        )
        assert event is not None
        assert event.event_id == "woo:727:2017-03-22T19:28:08Z"
        assert (event.order.id, event.order.number) == ("727", "#727")
        assert (event.order.currency, event.order.total) == ("USD", Decimal("29.35"))
        assert [(i.sku, i.name, i.quantity, i.unit_price) for i in event.order.items] == [
            (None, "Woo Single #1", 2, Decimal("3.00")),
            ("Bar3", "Ship Your Idea \u2013 Color: Black, Size: M Test", 1, Decimal("12.00")),
        ]
        assert event.customer.email == "john.doe@example.com"
        assert (event.customer.first_name, event.customer.last_name) == ("John", "Doe")
        assert event.cancellation.reason is Reason.other
        assert event.order.placed_at == datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)
        assert event.cancellation.cancelled_at == datetime(2017, 3, 22, 19, 28, 8, tzinfo=UTC)
        assert event.refund is not None
        assert event.refund.model_dump(exclude_none=True) == {
            "amount": "29.35",
            "currency": "USD",
            "method": RefundMethod.bank_transfer,  # bacs, paid
            "status": "pending",
        }

    def test_processing_docs_example_is_ignored(self, shared_fixtures: Path) -> None:
        raw = (shared_fixtures / WOO_PROCESSING).read_bytes()
        assert (
            woocommerce_to_event(
                raw, delivery_id="1", source_url="https://example.com/", received_at=RECEIVED
            )
            is None
        )

    def test_signed_in_test_with_a_known_secret(self, shared_fixtures: Path) -> None:
        # No published WooCommerce vector exists (SOURCES.md); sign the real body ourselves.
        raw = (shared_fixtures / WOO_CANCELLED).read_bytes()
        secret = b"wc&amp;secret with spaces"
        header = woocommerce_signature(raw, secret)
        assert verify_woocommerce(raw, header, [secret])
        assert not verify_woocommerce(raw.replace(b"29.35", b"29.36"), header, [secret])
        assert not verify_woocommerce(raw, header, [b"wc&secret with spacez"])
        assert not verify_woocommerce(raw, None, [secret])
