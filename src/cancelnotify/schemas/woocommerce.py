"""WooCommerce order body (REST v3): the parts we read, mapped onto the canonical event.

WooCommerce has no "order cancelled" topic: a cancellation arrives as `order.updated` whose body
"is exactly the same as if requested via the REST API", i.e. the v3 order
(https://woocommerce.github.io/woocommerce-rest-api-docs/#order-properties), with
`"status": "cancelled"`. Bodies with any other status are acknowledged and ignored.
"""

from __future__ import annotations

import hashlib
import html
import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from cancelnotify.schemas._platform import (
    Amount,
    OptStr,
    blank_to_none,
    clip,
    decimal_str,
    missing,
    null_to_list,
    platform_money,
)
from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod

__all__ = [
    "WOOCOMMERCE_CANCELLED_STATUS",
    "WooOrder",
    "woocommerce_refund_method",
    "woocommerce_to_event",
]

WOOCOMMERCE_CANCELLED_STATUS: Final = "cancelled"


# --- field types ----------------------------------------------------------------------------------


def _to_text(value: object) -> object:
    # `number` is a string in v3 but plugins (sequential numbers) and old versions send ints.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return blank_to_none(value)


def _gmt(value: object) -> object:
    # `*_gmt` fields are UTC wall-clock times without an offset ("2017-03-22T19:28:02").
    if isinstance(value, str) and value.strip():
        parsed = datetime.fromisoformat(value.strip())
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return blank_to_none(value)


Text = Annotated[str | None, BeforeValidator(_to_text)]
GmtDatetime = Annotated[datetime | None, BeforeValidator(_gmt)]


class _Platform(BaseModel):
    """Platform payloads carry dozens of fields we do not use; they are ignored, never rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class WooBilling(_Platform):
    first_name: OptStr = None
    last_name: OptStr = None
    email: OptStr = None
    phone: OptStr = None


class WooMeta(_Platform):
    key: OptStr = None
    value: Any = None


class WooLineItem(_Platform):
    name: OptStr = None
    quantity: int = 1
    price: Amount = None
    total: Amount = None
    sku: OptStr = None


class WooRefund(_Platform):
    total: Amount = None  # negative, e.g. "-10.00"


class WooOrder(_Platform):
    """The parts of a WooCommerce v3 order that the canonical event needs."""

    id: int | str
    number: Text = None
    status: str
    currency: str
    total: Amount = None
    date_created_gmt: GmtDatetime = None
    date_modified_gmt: GmtDatetime = None
    # Only whether they are set matters; v1/v2 and some plugins send other shapes than v3's string.
    date_paid: Annotated[Any, BeforeValidator(blank_to_none)] = None
    date_paid_gmt: Annotated[Any, BeforeValidator(blank_to_none)] = None
    payment_method: OptStr = None
    payment_method_title: OptStr = None
    billing: WooBilling | None = None
    line_items: Annotated[list[WooLineItem], BeforeValidator(null_to_list)] = Field(
        default_factory=list
    )
    refunds: Annotated[list[WooRefund], BeforeValidator(null_to_list)] = Field(default_factory=list)
    meta_data: Annotated[list[WooMeta], BeforeValidator(null_to_list)] = Field(default_factory=list)


class _WooStatus(_Platform):
    status: OptStr = None


# --- mapping tables -------------------------------------------------------------------------------

# Gateway ids (`payment_method`) of core WooCommerce and the common extensions.
_GATEWAYS: Final[dict[str, RefundMethod]] = {
    "stripe": RefundMethod.card,
    "stripe_cc": RefundMethod.card,
    "woocommerce_payments": RefundMethod.card,
    "square_credit_card": RefundMethod.card,
    "braintree_credit_card": RefundMethod.card,
    "authorize_net_cim_credit_card": RefundMethod.card,
    "ppcp-credit-card-gateway": RefundMethod.card,  # card fields of PayPal Payments
    "ppcp-card-button-gateway": RefundMethod.card,
    "paypal": RefundMethod.paypal,
    "ppec_paypal": RefundMethod.paypal,
    "ppcp-gateway": RefundMethod.paypal,
    "braintree_paypal": RefundMethod.paypal,
    "bacs": RefundMethod.bank_transfer,
    "cheque": RefundMethod.bank_transfer,  # paid by cheque: the money comes back by transfer
    "cod": RefundMethod.bank_transfer,  # paid cash on delivery: likewise
    "gift_card": RefundMethod.gift_card,
    "pw_gift_card": RefundMethod.gift_card,
    "wallet": RefundMethod.store_credit,
    "store_credit": RefundMethod.store_credit,
}
# Fallback on the id and the title the customer saw ("Credit Card (Stripe)", "Direct Bank
# Transfer").
_KEYWORDS: Final[tuple[tuple[str, RefundMethod], ...]] = (
    ("gift", RefundMethod.gift_card),
    ("store credit", RefundMethod.store_credit),
    ("store_credit", RefundMethod.store_credit),
    ("wallet", RefundMethod.store_credit),
    ("paypal", RefundMethod.paypal),
    ("card", RefundMethod.card),
    ("stripe", RefundMethod.card),
    ("bacs", RefundMethod.bank_transfer),
    ("bank", RefundMethod.bank_transfer),
    ("transfer", RefundMethod.bank_transfer),
    ("sepa", RefundMethod.bank_transfer),
    ("ideal", RefundMethod.bank_transfer),
    ("cheque", RefundMethod.bank_transfer),
    ("check", RefundMethod.bank_transfer),
    ("cash", RefundMethod.bank_transfer),
)
# Where multilingual plugins keep the order's language (WPML, Polylang, TranslatePress, ours).
_LOCALE_META_KEYS: Final = ("locale", "_locale", "wpml_language", "pll_language", "trp_language")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def woocommerce_refund_method(payment_method: str | None, title: str | None) -> RefundMethod:
    """Where money paid through a WooCommerce gateway goes back to (for a paid order).

    Unknown gateways map to `card`, the common case; the title is consulted before giving up.
    """
    key = (payment_method or "").strip().lower()
    if key in _GATEWAYS:
        return _GATEWAYS[key]
    haystack = f"{key} {(title or '').strip().lower()}"
    for keyword, method in _KEYWORDS:
        if keyword in haystack:
            return method
    return RefundMethod.card


# --- helpers --------------------------------------------------------------------------------------


def _locale(meta: list[WooMeta]) -> str | None:
    for entry in meta:
        if entry.key in _LOCALE_META_KEYS and isinstance(entry.value, str):
            tag = entry.value.strip().replace("_", "-")
            if len(tag) <= 35 and _LOCALE.match(tag):
                return tag
    return None


def _event_id(order: WooOrder, raw: bytes) -> str:
    # Dedupe key. X-WC-Webhook-Delivery-ID is wp_hash(webhook_id . time()) in current versions,
    # so it differs on every attempt: a resent body would look new. The order id plus
    # date_modified_gmt is the same in every copy of one update (Woo resends the same body, and
    # its known double-fires of order.updated for one save carry the same body too), and differs
    # for a later update. A later update of an already-cancelled order (a note, an edit) gets a
    # new id here; the business-key dedupe on the order keeps that from sending a second email.
    if order.date_modified_gmt is not None:
        stamp = order.date_modified_gmt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"woo:{order.id}:{stamp}"
    # No modification time: identical bodies are still the same event.
    return f"woo:{order.id}:sha256:{hashlib.sha256(raw).hexdigest()[:32]}"


def _align(price: Decimal, like: Decimal) -> Decimal:
    # `price` is a JSON number: 12 for "12.00", 3.3333333333333335 for 10.00 / 3. Show it with
    # the order's own decimals, rounded the way WooCommerce's wc_price() displays it.
    places = like.as_tuple().exponent
    if not isinstance(places, int):
        return price
    return price.quantize(Decimal(1).scaleb(places), rounding=ROUND_HALF_UP)


def _items(order: WooOrder) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for line in order.line_items:
        if line.quantity < 1:
            continue
        price = line.price
        if price is None and line.total is not None:
            price = platform_money(str(line.total / line.quantity))
        if price is not None and order.total is not None:
            price = _align(price, order.total)
        # Woo stores item names HTML-encoded ("Ship Your Idea &ndash; Color: Black"); the email
        # escapes on output, so decode here or the customer reads "&ndash;".
        name = html.unescape(line.name) if line.name else None
        items.append(
            {
                "sku": clip(line.sku, 100),
                "name": clip(name or line.sku, 200) or "Item",
                "quantity": line.quantity,
                "unit_price": decimal_str(price) if price is not None and price >= 0 else None,
            }
        )
    return items[:200]


def _refund(order: WooOrder, currency: str) -> dict[str, Any] | None:
    total = order.total
    paid = order.date_paid_gmt is not None or order.date_paid is not None
    if not paid or (total is not None and total == 0):
        # Unpaid orders (pending payment timed out, bacs/cheque/cod never paid) cancel for free.
        zero = Decimal(0).quantize(total) if total is not None else Decimal(0)
        return {
            "amount": decimal_str(zero),
            "currency": currency,
            "method": RefundMethod.none,
            "status": "completed",
        }
    method = woocommerce_refund_method(order.payment_method, order.payment_method_title)
    refunded = sum((abs(r.total) for r in order.refunds if r.total is not None), Decimal(0))
    if refunded > 0:
        amount, status = refunded, "initiated"  # refunds recorded on the order already
    elif total is not None:
        # Cancelling never refunds by itself in WooCommerce: the paid total is still owed.
        amount, status = total, "pending"
    else:
        return None
    return {"amount": decimal_str(amount), "currency": currency, "method": method, "status": status}


# --- mapping --------------------------------------------------------------------------------------


def woocommerce_to_event(
    raw: bytes,
    *,
    delivery_id: str,
    source_url: str | None,
    received_at: datetime,
) -> CancellationEventV1 | None:
    """Map a verified WooCommerce order body onto the canonical event.

    Args:
        raw: the request body exactly as received (after `verify_woocommerce`).
        delivery_id: `X-WC-Webhook-Delivery-ID`, kept in `origin` for ops (not the dedupe key,
            see `_event_id`).
        source_url: `X-WC-Webhook-Source`, the shop's home URL, kept in `origin`.
        received_at: when the request arrived (timezone-aware); the event time when the body
            has no `date_modified_gmt`.

    Returns:
        The event, or None when the order's status is not `cancelled` (acknowledge and ignore).

    Raises:
        pydantic.ValidationError: invalid JSON (`json_invalid`), a missing or malformed field
            the mapping needs (named in `loc`, e.g. `("billing", "email")`), or a mapped value
            the canonical event rejects.
    """
    if _WooStatus.model_validate_json(raw).status != WOOCOMMERCE_CANCELLED_STATUS:
        return None
    order = WooOrder.model_validate_json(raw)
    billing = order.billing or WooBilling()
    if billing.email is None:
        raise missing("WooOrder", ("billing", "email"), "the order has no billing email")
    currency = order.currency.strip().upper()
    number = order.number or str(order.id)
    phone = billing.phone.strip() if billing.phone else None

    return CancellationEventV1.model_validate(
        {
            "event_id": _event_id(order, raw),
            "occurred_at": order.date_modified_gmt or received_at,
            "order": {
                "id": str(order.id),
                "number": clip(number if number.startswith("#") else f"#{number}", 100),
                "placed_at": order.date_created_gmt,
                "currency": currency,
                "total": decimal_str(order.total)
                if order.total is not None and order.total >= 0
                else None,
                "items": _items(order),
                # The REST order has no customer-facing status link (my-account needs a login).
                "status_url": None,
            },
            "customer": {
                "email": billing.email.strip(),
                "first_name": clip(billing.first_name, 100),
                "last_name": clip(billing.last_name, 100),
                "locale": _locale(order.meta_data),
                "phone": phone if phone and len(phone) <= 40 else None,
            },
            "cancellation": {
                # Woo records no reason. `customer_note` is the buyer's own checkout note, so it
                # is never echoed back as if the shop had written it.
                "reason": Reason.other,
                "cancelled_at": order.date_modified_gmt,
            },
            "refund": _refund(order, currency),
            "origin": {
                "platform": "woocommerce",
                "source_url": source_url,
                "delivery_id": delivery_id,
            },
        }
    )
