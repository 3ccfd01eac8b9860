"""Shopify `orders/cancelled` body: the parts we read, mapped onto the canonical event.

Shopify documents the body as the REST Admin API Order resource
(https://shopify.dev/docs/api/admin-rest/latest/resources/order); refunds and their transactions
as https://shopify.dev/docs/api/admin-rest/latest/resources/refund. Only the fields we map are
modelled; everything else is ignored here (the route stores the raw body as received).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from cancelnotify.schemas._platform import (
    Amount,
    OptStr,
    clip,
    decimal_str,
    missing,
    null_to_list,
)
from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod, Url

__all__ = [
    "SHOPIFY_CANCELLED_TOPIC",
    "ShopifyOrder",
    "shopify_refund_method",
    "shopify_to_event",
]

SHOPIFY_CANCELLED_TOPIC: Final = "orders/cancelled"
"""The only `X-Shopify-Topic` that is mapped; the route acknowledges others and ignores them."""


# --- field types ----------------------------------------------------------------------------------


IdValue = int | str  # Shopify ids exceed 2**53: parsed as exact ints, never floats


class _Platform(BaseModel):
    """Platform payloads carry dozens of fields we do not use; they are ignored, never rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class ShopifyMoney(_Platform):
    amount: Amount = None
    currency_code: OptStr = None


class ShopifyMoneySet(_Platform):
    shop_money: ShopifyMoney | None = None
    presentment_money: ShopifyMoney | None = None


class ShopifyPaymentDetails(_Platform):
    credit_card_number: OptStr = None  # masked, e.g. "•••• •••• •••• 4242"
    credit_card_company: OptStr = None  # e.g. "Visa"


class ShopifyTransaction(_Platform):
    kind: OptStr = None  # "refund" inside refunds
    status: OptStr = None  # success | pending | failure | error
    amount: Amount = None
    currency: OptStr = None
    gateway: OptStr = None
    payment_details: ShopifyPaymentDetails | None = None


class ShopifyRefund(_Platform):
    transactions: Annotated[list[ShopifyTransaction], BeforeValidator(null_to_list)] = Field(
        default_factory=list
    )


class ShopifyLineItem(_Platform):
    name: OptStr = None
    title: OptStr = None
    quantity: int = 1
    price: Amount = None
    price_set: ShopifyMoneySet | None = None
    sku: OptStr = None


class ShopifyCustomer(_Platform):
    email: OptStr = None
    first_name: OptStr = None
    last_name: OptStr = None
    phone: OptStr = None
    locale: OptStr = None


class ShopifyAddress(_Platform):
    first_name: OptStr = None
    last_name: OptStr = None


class ShopifyOrder(_Platform):
    """The parts of a Shopify order webhook body that the canonical event needs."""

    id: IdValue
    name: OptStr = None
    order_number: IdValue | None = None
    email: OptStr = None
    contact_email: OptStr = None
    phone: OptStr = None
    created_at: AwareDatetime | None = None
    cancelled_at: AwareDatetime | None = None
    cancel_reason: OptStr = None
    currency: str
    presentment_currency: OptStr = None
    total_price: Amount = None
    total_price_set: ShopifyMoneySet | None = None
    total_outstanding: Amount = None
    financial_status: OptStr = None
    gateway: OptStr = None
    payment_gateway_names: Annotated[list[str], BeforeValidator(null_to_list)] = Field(
        default_factory=list
    )
    payment_details: ShopifyPaymentDetails | None = None
    line_items: Annotated[list[ShopifyLineItem], BeforeValidator(null_to_list)] = Field(
        default_factory=list
    )
    refunds: Annotated[list[ShopifyRefund], BeforeValidator(null_to_list)] = Field(
        default_factory=list
    )
    order_status_url: OptStr = None
    customer_locale: OptStr = None
    customer: ShopifyCustomer | None = None
    billing_address: ShopifyAddress | None = None
    test: bool = False


# --- mapping tables -------------------------------------------------------------------------------

# Shopify OrderCancelReason (REST/webhook JSON uses the lowercase names).
_REASONS: Final[dict[str, Reason]] = {
    "customer": Reason.customer_request,
    "fraud": Reason.fraud_suspected,
    "inventory": Reason.out_of_stock,
    "declined": Reason.payment_declined,
    "staff": Reason.other,  # "staff error": no customer-facing code of its own
    "other": Reason.other,
}
_INITIATED_BY: Final[dict[str, Literal["customer", "merchant", "system"]]] = {
    "customer": "customer",
    "fraud": "merchant",
    "inventory": "merchant",
    "staff": "merchant",
    "other": "merchant",
    "declined": "system",
}

# Gateway names as Shopify writes them (transaction `gateway`, order `payment_gateway_names`),
# normalised to lowercase with "_" for spaces and dashes.
_GATEWAYS: Final[dict[str, RefundMethod]] = {
    "shopify_payments": RefundMethod.card,
    "bogus": RefundMethod.card,  # Shopify's test gateway simulates a card
    "credit_card": RefundMethod.card,
    "stripe": RefundMethod.card,
    "braintree": RefundMethod.card,
    "authorize_net": RefundMethod.card,
    "adyen": RefundMethod.card,
    "visa": RefundMethod.card,
    "mastercard": RefundMethod.card,
    "american_express": RefundMethod.card,
    "paypal": RefundMethod.paypal,
    "paypal_express": RefundMethod.paypal,
    "paypal_express_checkout": RefundMethod.paypal,
    "gift_card": RefundMethod.gift_card,
    "shopify_store_credit": RefundMethod.store_credit,
    "store_credit": RefundMethod.store_credit,
    "manual": RefundMethod.bank_transfer,
    "bank_deposit": RefundMethod.bank_transfer,
    "bank_transfer": RefundMethod.bank_transfer,
    "money_order": RefundMethod.bank_transfer,
    "cash_on_delivery_(cod)": RefundMethod.bank_transfer,
    "cash_on_delivery": RefundMethod.bank_transfer,
    "cash": RefundMethod.bank_transfer,
}
_GATEWAY_KEYWORDS: Final[tuple[tuple[str, RefundMethod], ...]] = (
    ("paypal", RefundMethod.paypal),
    ("gift_card", RefundMethod.gift_card),
    ("store_credit", RefundMethod.store_credit),
    ("bank", RefundMethod.bank_transfer),
    ("transfer", RefundMethod.bank_transfer),
    ("manual", RefundMethod.bank_transfer),
    ("cash", RefundMethod.bank_transfer),
    ("money_order", RefundMethod.bank_transfer),
)
# Nothing was captured: the authorisation is released, the customer was not charged.
_NOT_CHARGED: Final = frozenset({"voided", "pending", "authorized", "expired", "unpaid"})

_LAST4 = re.compile(r"(\d{4})\D*$")
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_URL: Final[TypeAdapter[str]] = TypeAdapter(Url)


def shopify_refund_method(gateway: str | None) -> RefundMethod:
    """Where money paid through a Shopify gateway goes back to.

    Unknown gateways are card processors in the vast majority of shops, so they map to `card`.
    """
    if not gateway:
        return RefundMethod.card
    key = re.sub(r"[\s\-]+", "_", gateway.strip().lower())
    if key in _GATEWAYS:
        return _GATEWAYS[key]
    for keyword, method in _GATEWAY_KEYWORDS:
        if keyword in key:
            return method
    return RefundMethod.card


# --- helpers --------------------------------------------------------------------------------------


def _locale(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate:
            tag = candidate.strip().replace("_", "-")
            if len(tag) <= 35 and _LOCALE.match(tag):
                return tag
    return None


def _url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return _URL.validate_python(value.strip())
    except ValidationError:
        return None  # a broken status link must not cost the customer the whole email


def _last4(*details: ShopifyPaymentDetails | None) -> tuple[str | None, str | None]:
    for detail in details:
        if detail is not None and detail.credit_card_number:
            match = _LAST4.search(detail.credit_card_number)
            if match:
                return match.group(1), clip(detail.credit_card_company, 40)
    return None, None


# --- mapping --------------------------------------------------------------------------------------


def _amounts(order: ShopifyOrder) -> tuple[str, Decimal | None, bool]:
    """The currency the customer paid in, the order total in it, and whether that is presentment.

    Multi-currency shops charge in the presentment currency; `total_price` is in shop currency.
    The customer's own currency is used when the order carries it (`*_set.presentment_money`).
    """
    presentment = order.total_price_set.presentment_money if order.total_price_set else None
    if (
        order.presentment_currency
        and presentment is not None
        and presentment.amount is not None
        and order.presentment_currency != order.currency
    ):
        return order.presentment_currency, presentment.amount, True
    return order.currency, order.total_price, False


def _items(order: ShopifyOrder, presentment: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for line in order.line_items:
        if line.quantity < 1:
            continue  # removed by an order edit
        if presentment:
            money = line.price_set.presentment_money if line.price_set else None
            price = money.amount if money else None  # never a price in the wrong currency
        else:
            price = line.price
        items.append(
            {
                "sku": clip(line.sku, 100),
                "name": clip(line.name or line.title or line.sku, 200) or "Item",
                "quantity": line.quantity,
                "unit_price": decimal_str(price) if price is not None and price >= 0 else None,
            }
        )
    return items[:200]


def _refund(order: ShopifyOrder, currency: str, total: Decimal | None) -> dict[str, Any] | None:
    transactions = [
        t
        for refund in order.refunds
        for t in refund.transactions
        if (t.kind or "refund").lower() == "refund" and t.amount is not None and t.amount > 0
    ]
    done = [t for t in transactions if (t.status or "success").lower() == "success"]
    pending = [t for t in transactions if (t.status or "").lower() == "pending"]
    if done or pending:
        chosen = done or pending
        by_currency: defaultdict[str, list[ShopifyTransaction]] = defaultdict(list)
        for t in chosen:
            by_currency[(t.currency or currency).upper()].append(t)
        refund_currency = currency if currency in by_currency else next(iter(by_currency))
        group = by_currency[refund_currency]
        largest = max(group, key=lambda t: t.amount or Decimal(0))
        method = shopify_refund_method(largest.gateway)
        last4, brand = _last4(largest.payment_details, order.payment_details)
        return {
            "amount": decimal_str(sum((t.amount or Decimal(0) for t in group), Decimal(0))),
            "currency": refund_currency,
            "method": method,
            "card_last4": last4 if method is RefundMethod.card else None,
            "card_brand": brand if method is RefundMethod.card else None,
            # A successful refund transaction is with the gateway; the bank still needs days.
            "status": "initiated" if done else "pending",
        }

    status = (order.financial_status or "").lower()
    if status in _NOT_CHARGED or (total is not None and total == 0):
        zero = Decimal(0).quantize(total) if total is not None else Decimal(0)
        return {
            "amount": decimal_str(zero),
            "currency": currency,
            "method": RefundMethod.none,
            "status": "completed",
        }
    if status == "refunded":
        amount, refund_status = total, "initiated"
    elif status == "paid":
        # Cancelled without "refund payment" ticked: the refund is still owed.
        amount, refund_status = total, "pending"
    elif status == "partially_paid" and total is not None and order.total_outstanding is not None:
        amount, refund_status = total - order.total_outstanding, "pending"
    else:
        # partially_refunded without transactions, or unknown: no amount we could stand behind.
        return None
    if amount is None or amount < 0:
        return None
    gateways = [g for g in order.payment_gateway_names if g] or [order.gateway or ""]
    # Split tender: the non-gift-card part is the one that goes back to a bank account or card.
    gateway = next((g for g in gateways if "gift" not in g.lower()), gateways[0])
    method = shopify_refund_method(gateway or None)
    last4, brand = _last4(order.payment_details)
    return {
        "amount": decimal_str(amount),
        "currency": currency,
        "method": method,
        "card_last4": last4 if method is RefundMethod.card else None,
        "card_brand": brand if method is RefundMethod.card else None,
        "status": refund_status,
    }


def shopify_to_event(
    raw: bytes,
    *,
    webhook_id: str,
    shop_domain: str | None,
    received_at: datetime,
    event_id: str | None = None,
) -> CancellationEventV1:
    """Map a verified Shopify `orders/cancelled` body onto the canonical event.

    Args:
        raw: the request body exactly as received (after `verify_shopify`).
        webhook_id: `X-Shopify-Webhook-Id`, the same on every retry of one delivery.
        shop_domain: `X-Shopify-Shop-Domain`, kept in `origin` for ops.
        received_at: when the request arrived (timezone-aware); the event time when the body
            has no `cancelled_at`.
        event_id: `X-Shopify-Event-Id` when sent: the same across retries *and* across
            several subscriptions to one event, so it dedupes better than the webhook id.

    Raises:
        pydantic.ValidationError: invalid JSON (`json_invalid`), a missing or malformed field
            the mapping needs (named in `loc`, e.g. `("email",)` or `("currency",)`), or a
            mapped value the canonical event rejects.
    """
    order = ShopifyOrder.model_validate_json(raw)
    customer = order.customer or ShopifyCustomer()
    email = order.email or order.contact_email or customer.email
    if email is None:
        raise missing(
            "ShopifyOrder",
            ("email",),
            "the order has no customer email (email, contact_email and customer.email are empty)",
        )
    names = customer
    if not (customer.first_name or customer.last_name) and order.billing_address is not None:
        names = ShopifyCustomer(
            first_name=order.billing_address.first_name, last_name=order.billing_address.last_name
        )
    currency, total, presentment = _amounts(order)
    reason_key = (order.cancel_reason or "").lower()
    number = order.name or (f"#{order.order_number}" if order.order_number is not None else None)
    phone = order.phone or customer.phone

    return CancellationEventV1.model_validate(
        {
            "event_id": f"shopify:{event_id or webhook_id}",
            "occurred_at": order.cancelled_at or received_at,
            "order": {
                "id": str(order.id),
                "number": clip(number, 100),
                "placed_at": order.created_at,
                "currency": currency.upper(),
                "total": decimal_str(total) if total is not None and total >= 0 else None,
                "items": _items(order, presentment),
                "status_url": _url(order.order_status_url),
            },
            "customer": {
                "email": email.strip(),
                "first_name": clip(names.first_name, 100),
                "last_name": clip(names.last_name, 100),
                "locale": _locale(order.customer_locale, customer.locale),
                "phone": phone.strip() if phone and len(phone.strip()) <= 40 else None,
            },
            "cancellation": {
                # Shopify's order `note` is the merchant's internal note or the buyer's checkout
                # note, never words meant for this email, so no note is mapped.
                "reason": _REASONS.get(reason_key, Reason.other),
                "initiated_by": _INITIATED_BY.get(reason_key),
                "cancelled_at": order.cancelled_at,
            },
            "refund": _refund(order, currency.upper(), total),
            "origin": {
                "platform": "shopify",
                "shop_domain": shop_domain,
                "webhook_id": webhook_id,
                "event_id": event_id,
                "test": order.test,
            },
        }
    )
