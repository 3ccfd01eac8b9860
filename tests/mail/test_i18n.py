"""Locale negotiation, Babel formatting and business-day refund windows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from cancelnotify.i18n import (
    DEFAULT_REFUND_POLICY,
    add_business_days,
    format_money,
    format_short_date,
    formatting_locale,
    merge_refund_policy,
    negotiate_locale,
    refund_window,
)
from cancelnotify.schemas.event import RefundMethod
from cancelnotify.settings import Settings, SettingsError, load_settings


class TestNegotiateLocale:
    @pytest.mark.parametrize(
        ("tag", "expected"),
        [
            ("es-MX", "es"),
            ("es_mx", "es"),
            ("DE", "de"),
            ("fr-CA", "fr"),
            ("nl-BE", "nl"),
            ("it", "it"),
            ("en-GB", "en"),
            ("pt-BR", "en"),
            ("zh-Hant-TW", "en"),
            ("", "en"),
            (None, "en"),
            ("--", "en"),
        ],
    )
    def test_language_or_english(self, tag: str | None, expected: str) -> None:
        assert negotiate_locale(tag) == expected

    def test_exact_region_catalog_wins(self) -> None:
        assert negotiate_locale("pt-BR", ["en", "pt", "pt_BR"]) == "pt_BR"
        assert negotiate_locale("pt-PT", ["en", "pt", "pt_BR"]) == "pt"

    def test_formatting_keeps_the_customers_region(self) -> None:
        assert str(formatting_locale("es-MX", "es")) == "es_MX"
        assert str(formatting_locale("pt-BR", "en")) == "en"
        assert str(formatting_locale("de-XX", "de")) == "de"
        assert str(formatting_locale(None, "fr")) == "fr"


class TestFormatting:
    def test_money_per_locale(self) -> None:
        amount = Decimal("1129.90")
        assert format_money(amount, "EUR", "en") == "€1,129.90"
        assert format_money(amount, "EUR", "de") == "1.129,90\xa0€"
        assert format_money(amount, "EUR", "fr") == "1\u202f129,90\xa0€"
        assert format_money(Decimal("129.9"), "MXN", "es_MX") == "$129.90"

    def test_window_dates(self) -> None:
        assert format_short_date(date(2020, 12, 1), "en_GB") == "Tue 1 Dec"
        assert format_short_date(date(2020, 12, 1), "de") == "Di., 1. Dez."
        assert format_short_date(date(2021, 1, 5), "en_GB", with_year=True) == "Tue, 5 Jan 2021"


class TestBusinessDays:
    @pytest.mark.parametrize(
        ("start", "days", "expected"),
        [
            (date(2020, 11, 24), 0, date(2020, 11, 24)),  # Tue, immediately
            (date(2020, 11, 24), 5, date(2020, 12, 1)),  # Tue -> Tue across a weekend
            (date(2020, 11, 24), 10, date(2020, 12, 8)),  # the design's example window
            (date(2026, 11, 27), 1, date(2026, 11, 30)),  # Fri + 1 = Mon
            (date(2026, 11, 28), 1, date(2026, 11, 30)),  # Sat + 1 = Mon
            (date(2026, 11, 29), 1, date(2026, 11, 30)),  # Sun + 1 = Mon
            (date(2026, 11, 29), 5, date(2026, 12, 4)),  # Sun + 5 = Fri
            (date(2026, 1, 29), 3, date(2026, 2, 3)),  # Thu, month end
            (date(2024, 2, 28), 2, date(2024, 3, 1)),  # leap day counts (Thu 29 Feb)
            (date(2026, 12, 30), 3, date(2027, 1, 4)),  # Wed, year end: Thu, Fri, Mon
            (date(2026, 12, 24), 10, date(2027, 1, 7)),  # holidays are not skipped
        ],
    )
    def test_hand_computed(self, start: date, days: int, expected: date) -> None:
        assert add_business_days(start, days) == expected
        assert expected.weekday() < 5 or days == 0

    def test_negative_days_rejected(self) -> None:
        with pytest.raises(ValueError, match="days"):
            add_business_days(date(2026, 1, 1), -1)


class TestRefundPolicy:
    def test_defaults(self) -> None:
        policy = merge_refund_policy()
        assert policy == DEFAULT_REFUND_POLICY
        card = refund_window(date(2020, 11, 24), RefundMethod.card, policy)
        assert card is not None
        assert (card.start, card.end) == (date(2020, 12, 1), date(2020, 12, 8))
        paypal = refund_window(date(2020, 11, 24), RefundMethod.paypal, policy)
        assert paypal is not None
        assert (paypal.start, paypal.end) == (date(2020, 11, 27), date(2020, 12, 1))
        bank = refund_window(date(2020, 11, 24), RefundMethod.bank_transfer, policy)
        assert bank is not None
        assert (bank.start, bank.end) == (date(2020, 11, 27), date(2020, 12, 3))
        credit = refund_window(date(2020, 11, 24), RefundMethod.store_credit, policy)
        assert credit is not None
        assert credit.immediate
        assert refund_window(date(2020, 11, 24), RefundMethod.none, policy) is None

    def test_shop_overrides_merge_over_defaults(self) -> None:
        policy = merge_refund_policy({"card": (2, 3)}.items())
        assert policy[RefundMethod.card] == (2, 3)
        assert policy[RefundMethod.paypal] == (3, 5)

    def test_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CANCELNOTIFY_REFUND_POLICY", '{"card": [3, 7], "gift_card": [1, 1]}')
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.refund_policy == {"card": (3, 7), "gift_card": (1, 1)}

    @pytest.mark.parametrize("value", ['{"card": [7, 3]}', '{"none": [1, 2]}', '{"card": [-1, 2]}'])
    def test_bad_policy_is_one_clear_line(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("CANCELNOTIFY_REFUND_POLICY", value)
        with pytest.raises(SettingsError, match="CANCELNOTIFY_REFUND_POLICY"):
            load_settings(_env_file=None)
