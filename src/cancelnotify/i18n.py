"""Email locales: negotiation, Babel money and date formatting, refund windows in business days.

How the refund window is computed
---------------------------------
A refund policy maps each refund method to a ``(min, max)`` pair of *business days*
(Monday to Friday). The window starts counting on the **calendar date of the cancellation** as the
sender stated it (``cancellation.cancelled_at``, else the event's ``occurred_at``, in the offset the
sender gave; that offset is the shop's own clock, so the date is the one the shop would name).

``add_business_days(day, n)`` steps forward one day at a time and counts only weekdays, so:

* n = 0 means "immediately": the window is the cancellation date itself;
* n >= 1 lands on the n-th weekday *after* the cancellation date, so a cancellation on a Saturday
  or Sunday starts counting on Monday (Sat + 1 business day = Mon);
* a cancellation on Tuesday 24 November 2020 with the card policy (5, 10) gives the window
  "between Tue 1 Dec and Tue 8 Dec".

Public holidays are not skipped (they differ per country and bank); the upper bound is the figure
the shop promises, so keep some slack in the policy where holidays matter.

The defaults are ``DEFAULT_REFUND_POLICY``; a shop overrides any method without code changes through
``CANCELNOTIFY_REFUND_POLICY`` (JSON, e.g. ``{"card": [3, 7]}``), merged over the defaults.
A refund with method ``none`` (or no refund at all, or a zero amount) means nothing was charged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as _babel_format_date
from babel.dates import format_skeleton
from babel.numbers import format_currency, format_decimal

from cancelnotify.schemas.event import RefundMethod

DEFAULT_LOCALE: Final = "en"
SUPPORTED_LOCALES: Final = ("en", "de", "fr", "es", "it", "nl")

DEFAULT_REFUND_POLICY: Final[Mapping[RefundMethod, tuple[int, int]]] = {
    RefundMethod.card: (5, 10),
    RefundMethod.paypal: (3, 5),
    RefundMethod.bank_transfer: (3, 7),
    RefundMethod.store_credit: (0, 0),
    RefundMethod.gift_card: (0, 0),
}

_SATURDAY: Final = 5


def _split_tag(tag: str) -> list[str]:
    return [part for part in tag.strip().replace("_", "-").split("-") if part]


def negotiate_locale(tag: str | None, available: Iterable[str] = SUPPORTED_LOCALES) -> str:
    """Pick the catalog language for a BCP 47 tag: "es-MX" -> "es", "pt-BR" -> "en", None -> "en".

    An exact language+region catalog ("pt_BR") wins over the bare language when one is available.
    """
    if not tag:
        return DEFAULT_LOCALE
    parts = _split_tag(tag)
    if not parts:
        return DEFAULT_LOCALE
    wanted = {name.lower(): name for name in available}
    language = parts[0].lower()
    if len(parts) > 1:
        full = f"{language}_{parts[-1].upper()}"
        if full.lower() in wanted:
            return wanted[full.lower()]
    return wanted.get(language, DEFAULT_LOCALE)


@functools.lru_cache(maxsize=512)
def formatting_locale(tag: str | None, language: str) -> Locale:
    """The CLDR locale for numbers and dates: the customer's region when it speaks `language`.

    "es-MX" with language "es" formats as Mexico does ("$129.90"); "pt-BR" with "en" is plain "en".
    Cached, so an email's formatting calls get the same `Locale` object: the format caches below
    then find their entry by identity instead of comparing `Locale`s field by field (nine times
    per email), and the two `Locale.parse` calls go too (an email's context: 63-69 -> 41-46 us).
    """
    base = Locale.parse(language)
    if not tag:
        return base
    parts = _split_tag(tag)
    if len(parts) < 2 or parts[0].lower() != base.language:
        return base
    try:
        region_locale = Locale.parse(f"{parts[0].lower()}_{parts[-1].upper()}")
    except (UnknownLocaleError, ValueError):
        return base
    return region_locale


@functools.lru_cache(maxsize=4096)  # pure; a storm repeats prices and dates
def format_money(amount: Decimal, currency: str, locale: Locale | str) -> str:
    """Amount and currency as the locale writes them, e.g. "129,90 €" in German."""
    return format_currency(amount, currency, locale=locale)


@functools.lru_cache(maxsize=4096)  # pure; quantities are mostly small numbers
def format_count(count: int, locale: Locale | str) -> str:
    """A whole number as the locale writes it, e.g. "1.200" in German."""
    return format_decimal(count, locale=locale)


@functools.lru_cache(maxsize=4096)  # pure; a storm repeats prices and dates
def format_long_date(day: date, locale: Locale | str) -> str:
    """A full date for the order date, e.g. "26 November 2026" / "26. November 2026"."""
    return _babel_format_date(day, format="long", locale=locale)


@functools.lru_cache(maxsize=4096)  # pure; a storm repeats prices and dates
def format_short_date(day: date, locale: Locale | str, *, with_year: bool = False) -> str:
    """A weekday date for refund windows, e.g. "Tue 1 Dec" (en-GB) or "Di., 1. Dez." (de)."""
    return format_skeleton("yMMMEd" if with_year else "MMMEd", day, locale=locale)


@functools.lru_cache(maxsize=1024)  # pure; a storm cancels on the same few days
def add_business_days(day: date, days: int) -> date:
    """The `days`-th weekday after `day` (0 returns `day` itself); weekends are skipped."""
    if days < 0:
        raise ValueError("days must be >= 0")
    current = day
    remaining = days
    while remaining:
        current += timedelta(days=1)
        if current.weekday() < _SATURDAY:
            remaining -= 1
    return current


@dataclass(frozen=True, slots=True)
class RefundWindow:
    """When the money should arrive; `start == end` (`immediate`) for store credit, gift cards."""

    start: date
    end: date

    @property
    def immediate(self) -> bool:
        return self.start == self.end


def merge_refund_policy(
    overrides: Iterable[tuple[str, tuple[int, int]]] = (),
) -> dict[RefundMethod, tuple[int, int]]:
    """The default policy with overrides laid over it (from `settings.refund_policy.items()`)."""
    policy = dict(DEFAULT_REFUND_POLICY)
    for method, (low, high) in overrides:
        policy[RefundMethod(method)] = (low, high)
    return policy


def refund_window(
    cancelled_on: date, method: RefundMethod, policy: Mapping[RefundMethod, tuple[int, int]]
) -> RefundWindow | None:
    """The business-day window for `method`, or None when nothing goes back (method `none`)."""
    bounds = policy.get(method)
    if bounds is None:
        return None
    low, high = bounds
    return RefundWindow(add_business_days(cancelled_on, low), add_business_days(cancelled_on, high))
