"""Shopify and WooCommerce webhook signatures: pure functions over the raw request bytes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "is_woocommerce_ping",
    "shopify_signature",
    "verify_shopify",
    "verify_woocommerce",
    "woocommerce_signature",
    "wp_specialchars_decode",
]


def _hmac_sha256(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()


def _matches_any(body: bytes, header_value: str | None, keys: Iterable[bytes]) -> bool:
    if header_value is None:
        return False
    try:
        # Compare digests, not strings: compare_digest refuses non-ASCII str, and a header is
        # attacker-controlled. validate=True rejects anything that is not plain base64.
        received = base64.b64decode(header_value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(received) != hashlib.sha256().digest_size:
        return False
    matched = False
    for key in keys:
        if not key:
            continue  # an empty key is a key everybody knows
        expected = _hmac_sha256(key, body)
        # No early exit: every configured key costs the same whether or not an earlier one matched.
        matched |= hmac.compare_digest(expected, received)
    return matched


def shopify_signature(body: bytes, secret: bytes) -> str:
    """The `X-Shopify-Hmac-Sha256` value Shopify sends for `body` signed with `secret`."""
    return base64.b64encode(_hmac_sha256(secret, body)).decode("ascii")


def verify_shopify(body: bytes, header_value: str | None, secrets: Sequence[bytes]) -> bool:
    """Check `X-Shopify-Hmac-Sha256`: base64(HMAC-SHA256(app secret, raw body)).

    Args:
        body: the request body exactly as received (never re-serialised JSON).
        header_value: the header, or None when it was missing.
        secrets: every accepted app secret as UTF-8 bytes (several while a secret rotates).

    Returns:
        True when the header matches any secret. Shopify signs no timestamp, so there is no
        replay window to check; dedupe on the webhook/event id instead.
    """
    return _matches_any(body, header_value, secrets)


# wp_specialchars_decode($text, ENT_QUOTES) from WordPress wp-includes/formatting.php: first
# zero-padded numeric entities are normalised, then one strtr() pass (longest match first, no
# re-scan of replaced text, so "&amp;lt;" becomes "&lt;", not "<"). html.unescape would decode
# far more (named entities, missing semicolons) and so compute a different key.
_WP_ZERO_PADDING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"&#0*39;"), "&#039;"),
    (re.compile(r"&#x0*27;", re.IGNORECASE), "&#x27;"),
    (re.compile(r"&#0*34;"), "&#034;"),
    (re.compile(r"&#x0*22;", re.IGNORECASE), "&#x22;"),
    (re.compile(r"&#0*60;"), "&#060;"),
    (re.compile(r"&#0*62;"), "&#062;"),
    (re.compile(r"&#0*38;"), "&#038;"),
    (re.compile(r"&#x0*26;", re.IGNORECASE), "&#x26;"),
)
_WP_TRANSLATION: dict[str, str] = {
    "&#039;": "'",
    "&#x27;": "'",
    "&quot;": '"',
    "&#034;": '"',
    "&#x22;": '"',
    "&lt;": "<",
    "&#060;": "<",
    "&gt;": ">",
    "&#062;": ">",
    "&amp;": "&",
    "&#038;": "&",
    "&#x26;": "&",
}
_WP_TRANSLATION_RE = re.compile(
    "|".join(re.escape(k) for k in sorted(_WP_TRANSLATION, key=len, reverse=True))
)


def wp_specialchars_decode(text: str) -> str:
    """WordPress's `wp_specialchars_decode($text, ENT_QUOTES)`, which WooCommerce applies to
    the webhook secret before using it as the HMAC key."""
    if "&" not in text:
        return text
    for pattern, replacement in _WP_ZERO_PADDING:
        text = pattern.sub(replacement, text)
    return _WP_TRANSLATION_RE.sub(lambda m: _WP_TRANSLATION[m.group(0)], text)


def _woocommerce_key(secret: bytes) -> bytes:
    try:
        decoded = secret.decode("utf-8")
    except UnicodeDecodeError:
        return secret  # PHP works on bytes; a non-UTF-8 secret has no entities we could decode
    return wp_specialchars_decode(decoded).encode("utf-8")


def woocommerce_signature(body: bytes, secret: bytes) -> str:
    """The `X-WC-Webhook-Signature` value WooCommerce sends for `body` signed with `secret`."""
    return base64.b64encode(_hmac_sha256(_woocommerce_key(secret), body)).decode("ascii")


def verify_woocommerce(body: bytes, header_value: str | None, secrets: Sequence[bytes]) -> bool:
    """Check `X-WC-Webhook-Signature`: base64(HMAC-SHA256(decoded secret, raw body)).

    WooCommerce (`WC_Webhook::generate_signature`) keys the HMAC with
    `wp_specialchars_decode($secret, ENT_QUOTES)`; the same decoding is applied here, so the
    secret is configured exactly as WooCommerce shows it. Woo secrets may contain spaces and
    `&<>"'`, so never split them on whitespace. No timestamp is signed (no replay window).
    """
    return _matches_any(body, header_value, (_woocommerce_key(s) for s in secrets))


_PING_BODY = re.compile(rb"webhook_id=[0-9]{1,20}")
_FORM = "application/x-www-form-urlencoded"


def is_woocommerce_ping(content_type: str | None, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether this request is the unsigned ping WooCommerce sends when a webhook is saved.

    `WC_Webhook::deliver_ping()` POSTs the form body `webhook_id=<id>` with no `X-WC-Webhook-*`
    headers and activates the webhook only if the answer is exactly HTTP 200 (not 202/204).
    The ping carries no order data and no signature: answer 200 and store nothing.
    """
    if any(name.lower().startswith("x-wc-webhook-") for name in headers):
        return False  # real deliveries carry these and must be verified
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in ("", _FORM):
        return False
    return _PING_BODY.fullmatch(body.strip()) is not None
