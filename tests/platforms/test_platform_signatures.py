"""Shopify and WooCommerce HMAC verification over raw bytes, and the WooCommerce ping."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable

import pytest

from cancelnotify.platform_signatures import (
    is_woocommerce_ping,
    shopify_signature,
    verify_shopify,
    verify_woocommerce,
    woocommerce_signature,
    wp_specialchars_decode,
)

SECRET = b"hush-hush-0123456789abcdef"
OTHER = b"another-secret-9876543210"
Verify = Callable[[bytes, str | None, list[bytes]], bool]
Sign = Callable[[bytes, bytes], str]
SCHEMES: list[tuple[Sign, Verify]] = [
    (shopify_signature, verify_shopify),
    (woocommerce_signature, verify_woocommerce),
]


@pytest.fixture
def body(own_raw: Callable[[str], bytes]) -> bytes:
    return own_raw("shopify_order_cancelled_refunded.json")


def _reference(key: bytes, body: bytes) -> str:
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


@pytest.mark.parametrize(("sign", "verify"), SCHEMES)
class TestBothSchemes:
    def test_valid_signature(self, body: bytes, sign: Sign, verify: Verify) -> None:
        header = sign(body, SECRET)
        assert header == _reference(SECRET, body)
        assert verify(body, header, [SECRET])

    def test_any_configured_secret_during_rotation(
        self, body: bytes, sign: Sign, verify: Verify
    ) -> None:
        assert verify(body, sign(body, SECRET), [OTHER, SECRET])

    @pytest.mark.parametrize("position", [0, 100, -1])
    def test_one_flipped_body_byte(
        self, body: bytes, sign: Sign, verify: Verify, position: int
    ) -> None:
        header = sign(body, SECRET)
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        assert not verify(bytes(tampered), header, [SECRET])

    def test_wrong_secret(self, body: bytes, sign: Sign, verify: Verify) -> None:
        assert not verify(body, sign(body, OTHER), [SECRET])

    def test_missing_header(self, body: bytes, sign: Sign, verify: Verify) -> None:
        assert not verify(body, None, [SECRET])

    def test_no_secret_configured(self, body: bytes, sign: Sign, verify: Verify) -> None:
        assert not verify(body, sign(body, SECRET), [])

    def test_empty_secret_is_never_a_key(self, body: bytes, sign: Sign, verify: Verify) -> None:
        assert not verify(body, sign(body, b""), [b""])

    def test_reserialised_json_fails(self, body: bytes, sign: Sign, verify: Verify) -> None:
        header = sign(body, SECRET)
        reserialised = json.dumps(json.loads(body)).encode()
        assert reserialised != body
        assert not verify(reserialised, header, [SECRET])

    @pytest.mark.parametrize(
        "header",
        ["", "not base64 at all!", "AAAA", "é" * 44, "\x00", "sha256=" + "A" * 44],
    )
    def test_garbage_header(self, body: bytes, sign: Sign, verify: Verify, header: str) -> None:
        assert not verify(body, header, [SECRET])

    def test_surrounding_whitespace_is_tolerated(
        self, body: bytes, sign: Sign, verify: Verify
    ) -> None:
        assert verify(body, f" {sign(body, SECRET)}\t", [SECRET])

    def test_signature_flipped_in_one_bit(self, body: bytes, sign: Sign, verify: Verify) -> None:
        digest = bytearray(base64.b64decode(sign(body, SECRET)))
        digest[5] ^= 0x80
        assert not verify(body, base64.b64encode(bytes(digest)).decode(), [SECRET])


class TestWoocommerceSecret:
    @pytest.mark.parametrize(
        ("stored", "key"),
        [
            ("plain-secret", "plain-secret"),
            ("a&amp;b", "a&b"),
            ("&lt;tag&gt;", "<tag>"),
            ("&quot;q&quot; &#039;s&#039;", "\"q\" 's'"),
            ("&#39;&#0039;&#x27;&#X27;&#x0027;", "'''''"),
            ("&#34;&#x22;&#60;&#62;&#38;&#x26;", '""<>&&'),
            ("&amp;lt;", "&lt;"),  # one pass, like PHP strtr: no double decoding
            ("&eacute;&nbsp;&apos;", "&eacute;&nbsp;&apos;"),  # not special chars: kept
            ("a & b &amp", "a & b &amp"),  # no semicolon: kept
        ],
    )
    def test_wp_specialchars_decode(self, stored: str, key: str) -> None:
        assert wp_specialchars_decode(stored) == key

    def test_secret_is_entity_decoded_before_keying(self, body: bytes) -> None:
        # WooCommerce keys the HMAC with wp_specialchars_decode($secret, ENT_QUOTES).
        header = _reference(b"x&y<z>", body)
        assert verify_woocommerce(body, header, [b"x&amp;y&lt;z&gt;"])
        assert verify_woocommerce(body, header, [b"x&y<z>"])
        assert not verify_shopify(body, header, [b"x&amp;y&lt;z&gt;"])

    def test_secret_with_spaces_and_symbols(self, body: bytes) -> None:
        # wp_generate_password(50, true, true) may produce spaces and any of these.
        secret = b"q3 [x]{y}<z>~`+=,.;:/?|!@#$%^&*()-_ end"
        assert verify_woocommerce(body, woocommerce_signature(body, secret), [secret])

    def test_non_utf8_secret_is_used_as_is(self, body: bytes) -> None:
        secret = b"\xff\xfe&amp;"
        assert verify_woocommerce(body, _reference(secret, body), [secret])


class TestWoocommercePing:
    FORM = "application/x-www-form-urlencoded"

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            (FORM, b"webhook_id=12"),
            (f"{FORM}; charset=UTF-8", b"webhook_id=12"),
            (None, b"webhook_id=4711"),  # some WordPress HTTP transports set none
            (FORM, b"webhook_id=12\n"),
        ],
    )
    def test_ping(self, content_type: str | None, body: bytes) -> None:
        headers = {"User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7)"}
        assert is_woocommerce_ping(content_type, body, headers)

    @pytest.mark.parametrize(
        ("content_type", "body", "headers"),
        [
            ("application/json", b"webhook_id=12", {}),
            (FORM, b"webhook_id=12&x=1", {}),
            (FORM, b"webhook_id=", {}),
            (FORM, b"webhook_id=abc", {}),
            (FORM, b'{"webhook_id": 12}', {}),
            (FORM, b"", {}),
            # A signed delivery is never a ping, whatever its body: it must be verified.
            (FORM, b"webhook_id=12", {"X-WC-Webhook-Signature": "abc="}),
            (FORM, b"webhook_id=12", {"x-wc-webhook-topic": "order.updated"}),
        ],
    )
    def test_not_a_ping(self, content_type: str, body: bytes, headers: dict[str, str]) -> None:
        assert not is_woocommerce_ping(content_type, body, headers)
