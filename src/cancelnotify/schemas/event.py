"""The canonical order-cancelled event, version 1: the one shape every source is mapped onto."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from email_validator.rfc_constants import ATEXT, EMAIL_MAX_LENGTH
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic.networks import validate_email


class Reason(StrEnum):
    """Why the order was cancelled; each code has its own customer wording."""

    customer_request = "customer_request"
    out_of_stock = "out_of_stock"
    payment_declined = "payment_declined"
    fraud_suspected = "fraud_suspected"
    address_unverifiable = "address_unverifiable"
    shipping_unavailable = "shipping_unavailable"
    pricing_error = "pricing_error"
    other = "other"


class RefundMethod(StrEnum):
    """Where the money goes back to."""

    card = "card"
    paypal = "paypal"
    store_credit = "store_credit"
    bank_transfer = "bank_transfer"
    gift_card = "gift_card"
    none = "none"


_MONEY = re.compile(r"^\d{1,15}(\.\d{1,4})?$")


def _parse_money(value: object) -> Decimal:
    # Money travels as a decimal string so no float ever rounds a refund.
    if not isinstance(value, str):
        raise ValueError('must be a decimal string such as "129.90", not a number')
    if not _MONEY.match(value):
        raise ValueError('must be a non-negative decimal string such as "129.90"')
    try:
        return Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise ValueError("is not a decimal number") from exc


Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    PlainSerializer(lambda d: format(d, "f"), return_type=str),
]

_URL_ADAPTER: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _check_url(value: str) -> str:
    # Validate as an http(s) URL but keep the sender's exact string (pydantic would normalise it).
    _URL_ADAPTER.validate_python(value)
    return value


Url = Annotated[str, Field(max_length=2048), AfterValidator(_check_url)]

# An address email-validator accepts as it is: the library's own dot-atom local part and a
# lower-case LDH domain of two or more labels under an alphabetic TLD. No "--" (punycode and
# IDNA's rules stay with the library), no upper case in the domain (the library lowers it).
_PLAIN_EMAIL = re.compile(
    rf"[{ATEXT}]+(?:\.[{ATEXT}]+)*@(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+[a-z]{{2,63}}"
)


def _check_email(value: str) -> str:
    """What `EmailStr` gives (email-validator's normalized address), cheaply for most input.

    Almost every address is plain ASCII and already normalized: those are checked here, with
    the library's length limit and special-use domains; the rest (upper case or IDN domains,
    Unicode, quoted local parts, "Name <address>", anything odd) go through email-validator.
    Profiled: the library was a tenth of an ingest. A test checks that both agree on a corpus.
    """
    if (
        len(value) <= EMAIL_MAX_LENGTH
        and _PLAIN_EMAIL.fullmatch(value)
        and "--" not in (domain := value[value.index("@") + 1 :])
        and not _special_use(domain)
    ):
        return value
    return validate_email(value)[1]


def _special_use(domain: str) -> bool:
    return any(domain == name or domain.endswith("." + name) for name in SPECIAL_USE_DOMAIN_NAMES)


Email = Annotated[
    str, AfterValidator(_check_email), WithJsonSchema({"type": "string", "format": "email"})
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class _Open(BaseModel):
    """Unknown extra fields are kept (they live on in the stored payload), never rejected."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)


class Item(_Open):
    sku: str | None = Field(default=None, max_length=100)
    name: ShortText
    quantity: int = Field(default=1, ge=1, le=100_000)
    unit_price: Money | None = None
    image_url: Url | None = None
    url: Url | None = None


class Order(_Open):
    id: Annotated[str, Field(min_length=1, max_length=100, description="The shop's order id")]
    number: str | None = Field(default=None, max_length=100, description="What the customer sees")
    placed_at: AwareDatetime | None = None
    currency: Currency
    total: Money | None = None
    items: list[Item] = Field(default_factory=list, max_length=200)
    status_url: Url | None = None


class Customer(_Open):
    email: Email
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    locale: str | None = Field(default=None, max_length=35, description="BCP 47, e.g. es-MX")
    phone: str | None = Field(default=None, max_length=40)
    vip: bool = False


class Cancellation(_Open):
    reason: Reason
    note: str | None = Field(default=None, max_length=1000)
    initiated_by: Literal["customer", "merchant", "system"] | None = None
    cancelled_at: AwareDatetime | None = None


class Refund(_Open):
    amount: Money
    currency: Currency
    method: RefundMethod
    card_last4: str | None = Field(default=None, pattern=r"^\d{4}$")
    card_brand: str | None = Field(default=None, max_length=40)
    status: Literal["pending", "initiated", "completed", "failed"] = "pending"


class Alternative(_Open):
    name: ShortText
    url: Url
    image_url: Url | None = None
    price: Money | None = None


class CancellationEventV1(_Open):
    """`POST /v1/webhooks/order-cancelled` body; also what Shopify and WooCommerce map onto."""

    event_id: Annotated[str, Field(min_length=1, max_length=200)]
    occurred_at: AwareDatetime
    order: Order
    customer: Customer
    cancellation: Cancellation
    refund: Refund | None = None
    alternatives: list[Alternative] = Field(default_factory=list, max_length=20)
    reorder_url: Url | None = None

    @property
    def cancelled_at(self) -> datetime:
        """When the cancellation happened, falling back to when the event occurred."""
        return self.cancellation.cancelled_at or self.occurred_at


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of the canonical event (for /openapi.json and /preview)."""
    return CancellationEventV1.model_json_schema()
