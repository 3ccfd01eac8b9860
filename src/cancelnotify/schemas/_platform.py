"""Field coercions shared by the platform mappers (Shopify, WooCommerce)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def blank_to_none(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def null_to_list(value: object) -> object:
    return [] if value is None else value


def platform_money(value: object) -> Decimal | None:
    """A platform amount as an exact Decimal.

    Platforms send money as decimal strings, but WooCommerce line-item `price` is a JSON number,
    sometimes a float such as 3.3333333333333335. str() gives the shortest repr of the float and
    Decimal keeps it exactly; beyond 4 decimals (the canonical limit) it is rounded half-up.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('must be a decimal amount such as "19.99"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError('must be a decimal amount such as "19.99"') from exc
    if not amount.is_finite():
        raise ValueError("must be a finite decimal amount")
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        amount = amount.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return amount


OptStr = Annotated[str | None, BeforeValidator(blank_to_none)]
Amount = Annotated[Decimal | None, BeforeValidator(platform_money)]


def missing(title: str, loc: tuple[str, ...], message: str) -> ValidationError:
    """A pydantic ValidationError naming the platform field that is absent."""
    return ValidationError.from_exception_data(
        title,
        [InitErrorDetails(type=PydanticCustomError("missing", message), loc=loc, input=None)],
    )


def decimal_str(amount: Decimal) -> str:
    return format(amount, "f")


def clip(value: str | None, limit: int) -> str | None:
    """Trim and cut to the canonical field's limit rather than reject a long platform value."""
    if value is None:
        return None
    value = value.strip()
    return value[:limit] or None
