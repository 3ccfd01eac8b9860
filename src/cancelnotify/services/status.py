"""The customer status page: from a signed link to what the customer may see, localized."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from babel import Locale
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from cancelnotify import repository
from cancelnotify.errors import NotFound
from cancelnotify.i18n import (
    DEFAULT_LOCALE,
    format_long_date,
    format_money,
    format_short_date,
    formatting_locale,
    merge_refund_policy,
    negotiate_locale,
    refund_window,
)
from cancelnotify.links import InvalidLinkTokenError, verify_status_token
from cancelnotify.mail.render import N_, Renderer
from cancelnotify.schemas.event import CancellationEventV1, RefundMethod
from cancelnotify.services.refunds import refund_state
from cancelnotify.settings import Settings

StepState = Literal["done", "current", "upcoming", "problem"]

_METHOD_LABEL = {
    RefundMethod.card: N_("Card"),
    RefundMethod.paypal: N_("PayPal"),
    RefundMethod.bank_transfer: N_("Bank account"),
    RefundMethod.store_credit: N_("Store credit"),
    RefundMethod.gift_card: N_("Gift card"),
}


@dataclass(frozen=True, slots=True)
class Step:
    label: str
    state: StepState
    date: str | None = None


@dataclass(frozen=True, slots=True)
class StatusView:
    """Everything the page shows, already translated: order, items, refund, steps. No PII."""

    lang: str
    order_number: str
    reference: str
    details_available: bool
    items: list[tuple[str, str]] = field(default_factory=list)
    refund_amount: str | None = None
    refund_method: str | None = None
    expected: str | None = None
    problem: bool = False
    steps: list[Step] = field(default_factory=list)


def pick_language(locale: str | None, accept_language: str | None, available: list[str]) -> str:
    """The email's language when we have it, else the browser's best match, else English."""
    candidates = [locale] if locale else []
    candidates += _accept_language(accept_language or "")
    for tag in candidates:
        primary = tag.replace("_", "-").split("-")[0].lower()
        if any(name.split("_")[0].lower() == primary for name in available):
            return negotiate_locale(tag, available)
    return DEFAULT_LOCALE


def _accept_language(header: str) -> list[str]:
    weighted = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag.strip()))
    return [tag for _, _, tag in sorted(weighted)]


async def view(
    session: AsyncSession,
    token: str,
    *,
    settings: Settings,
    renderer: Renderer,
    accept_language: str | None,
) -> StatusView:
    """The status page of the notification a signed token names; 404 for anything else."""
    try:
        notification_id = verify_status_token(token, settings.signing_key())
    except InvalidLinkTokenError:
        raise NotFound("This status link is not valid") from None
    notification = await repository.get_notification_with_cancellation(session, notification_id)
    if notification is None:
        raise NotFound("This status link is not valid")
    cancellation = notification.cancellation
    lang = pick_language(notification.locale, accept_language, renderer.locales())
    fmt = formatting_locale(notification.locale, lang)
    _ = renderer.translations(lang).gettext
    events = await repository.refund_events_for(session, cancellation.id)
    event = _event(cancellation.payload)
    order_number = cancellation.order_number or cancellation.order_id
    if event is None:  # purged by retention, or unreadable: only what the columns keep
        return StatusView(lang, order_number, cancellation.reference, details_available=False)
    return _build(
        lang=lang,
        fmt=fmt,
        gettext=_,
        event=event,
        order_number=order_number,
        reference=cancellation.reference,
        events=events,
        policy=merge_refund_policy(settings.refund_policy.items()),
    )


def _event(payload: dict[str, Any] | None) -> CancellationEventV1 | None:
    if payload is None:
        return None
    try:
        return CancellationEventV1.model_validate(payload)
    except ValidationError:
        return None


def _build(
    *,
    lang: str,
    fmt: Locale,
    gettext: Callable[[str], str],
    event: CancellationEventV1,
    order_number: str,
    reference: str,
    events: Iterable[Any],
    policy: Any,
) -> StatusView:
    _ = gettext
    events = list(events)
    state = refund_state(events)
    refund = event.refund
    items = [(i.name, str(i.quantity)) for i in event.order.items[:50]]
    cancelled_on = event.cancelled_at.date()
    steps = [Step(_("Cancelled"), "done", format_long_date(cancelled_on, fmt))]
    charged = refund is not None and refund.method is not RefundMethod.none and refund.amount > 0
    if not charged and not events:
        return StatusView(lang, order_number, reference, True, items, steps=steps)
    method = refund.method if refund is not None else RefundMethod.card
    amount = refund.amount if refund is not None else Decimal(0)
    currency = refund.currency if refund is not None else event.order.currency
    latest = events[-1] if events else None
    if latest is not None:
        method = _method(latest.method, method)
        amount, currency = _amount(latest.amount, amount), latest.currency
    initiated = next((e for e in events if e.kind in ("initiated", "completed")), None)
    completed = next((e for e in events if e.kind == "completed"), None)
    steps.append(
        Step(
            _("Refund initiated"),
            "done" if initiated else "current",
            format_long_date(initiated.occurred_at.date(), fmt) if initiated else None,
        )
    )
    if state == "failed":
        steps.append(Step(_("Refund completed"), "problem"))
    else:
        steps.append(
            Step(
                _("Refund completed"),
                "done" if completed else ("current" if initiated else "upcoming"),
                format_long_date(completed.occurred_at.date(), fmt) if completed else None,
            )
        )
    window_from: date = completed.occurred_at.date() if completed else cancelled_on
    return StatusView(
        lang=lang,
        order_number=order_number,
        reference=reference,
        details_available=True,
        items=items,
        refund_amount=format_money(amount, currency, fmt),
        refund_method=_(_METHOD_LABEL[method]) if method in _METHOD_LABEL else None,
        expected=None if state == "failed" else _expected(window_from, method, policy, fmt, _),
        problem=state == "failed",
        steps=steps,
    )


def _method(value: str | None, default: RefundMethod) -> RefundMethod:
    try:
        return RefundMethod(value) if value else default
    except ValueError:
        return default


def _amount(value: str, default: Decimal) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        return default


def _expected(
    start: date, method: RefundMethod, policy: Any, fmt: Locale, _: Callable[[str], str]
) -> str | None:
    window = refund_window(start, method, policy)
    if window is None:
        return None
    if window.end == start:
        return _("Right away")
    with_year = window.end.year != start.year
    low = format_short_date(window.start, fmt, with_year=with_year)
    high = format_short_date(window.end, fmt, with_year=with_year)
    if low == high:
        return _("It should be back with you by %(end)s.") % {"end": high}
    return _("It should be back with you between %(start)s and %(end)s.") % {
        "start": low,
        "end": high,
    }
