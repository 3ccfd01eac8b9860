"""Standard Webhooks signature verification: pure functions over the raw request bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass


class SignatureError(Exception):
    """Why a signed request was refused; the message is safe to show the sender."""


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    webhook_id: str
    timestamp: int
    signatures: str


def parse_headers(
    webhook_id: str | None, timestamp: str | None, signature: str | None
) -> SignedHeaders:
    """Check the three Standard Webhooks headers are present and well-formed."""
    missing = [
        name
        for name, value in (
            ("webhook-id", webhook_id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        )
        if not value
    ]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    webhook_id = str(webhook_id)
    if len(webhook_id) > 200 or not webhook_id.isprintable():
        raise SignatureError("webhook-id must be printable and at most 200 characters")
    try:
        ts = int(str(timestamp))
    except ValueError:
        raise SignatureError("webhook-timestamp must be integer Unix seconds") from None
    return SignedHeaders(webhook_id, ts, str(signature))


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of a message (used by tests, `dev` and the benchmark)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    headers: SignedHeaders, body: bytes, keys: Sequence[bytes], *, now: float, tolerance: float
) -> None:
    """Raise SignatureError unless the timestamp is fresh and any `v1` signature matches any key.

    Several keys allow secret rotation; several signatures in the header allow the sender's.
    """
    if abs(now - headers.timestamp) > tolerance:
        raise SignatureError("webhook-timestamp is outside the accepted tolerance")
    signed = f"{headers.webhook_id}.{headers.timestamp}.".encode() + body
    expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in keys]
    for entry in headers.signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue  # v1a (ed25519) and future versions are skipped, as the spec says
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        # Compare against every key so timing does not reveal which one matched.
        matched = False
        for digest in expected:
            matched |= hmac.compare_digest(digest, given)
        if matched:
            return
    raise SignatureError("no webhook-signature matches")
