"""The rendered email: every reason x method x locale, layout rules, size, overrides, catalogs."""

from __future__ import annotations

import html
import logging
import random
import re
import shutil
import subprocess
import sys
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import pytest
from babel.messages.pofile import read_po

from cancelnotify.i18n import (
    SUPPORTED_LOCALES,
    format_money,
    format_short_date,
    formatting_locale,
    merge_refund_policy,
    negotiate_locale,
    refund_window,
)
from cancelnotify.mail import render as render_module
from cancelnotify.mail.render import (
    REASON_COPY,
    RenderedEmail,
    Renderer,
    UnknownTemplateError,
    default_templates_dir,
    escape_output,
    fast_wordwrap,
    finish_text,
)
from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod
from cancelnotify.settings import Settings

from .conftest import NOTIFICATION_ID, REFERENCE, MakeEvent, make_settings

LOCALE_TAGS = {
    "en": "en-US",
    "de": "de-DE",
    "fr": "fr-FR",
    "es": "es-MX",
    "it": "it-IT",
    "nl": "nl-NL",
}
NOT_CHARGED = "You were not charged for this order, so there is nothing to refund."
GMAIL_CLIP_BYTES = 102 * 1024
TAG = re.compile(r"<[a-zA-Z/!][^>]*>")
REPO = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """Whitespace-normalised text, HTML entities decoded, so wrapped lines compare as prose."""
    return " ".join(html.unescape(text).split())


def render(renderer: Renderer, event: CancellationEventV1, **kwargs: Any) -> RenderedEmail:
    return renderer.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE, **kwargs)


def matrix_event(
    make_event: MakeEvent, reason: Reason, method: RefundMethod, language: str
) -> CancellationEventV1:
    return make_event(
        **{
            "cancellation.reason": reason.value,
            "refund.method": method.value,
            "customer.locale": LOCALE_TAGS[language],
        }
    )


class TestMatrix:
    @pytest.mark.parametrize("language", SUPPORTED_LOCALES)
    @pytest.mark.parametrize("method", list(RefundMethod))
    @pytest.mark.parametrize("reason", list(Reason))
    def test_every_reason_method_locale(
        self,
        renderer: Renderer,
        make_event: MakeEvent,
        reason: Reason,
        method: RefundMethod,
        language: str,
    ) -> None:
        event = matrix_event(make_event, reason, method, language)
        email = render(renderer, event)
        assert email.locale == language
        translations = renderer.translations(language)
        reason_copy = translations.gettext(REASON_COPY[reason])
        if language != "en":
            assert reason_copy != REASON_COPY[reason], "catalog not loaded"
        fmt = formatting_locale(LOCALE_TAGS[language], language)
        amount = flat(format_money(event.refund.amount, "EUR", fmt))  # type: ignore[union-attr]
        window = refund_window(event.cancelled_at.date(), method, merge_refund_policy())
        for part in (flat(email.html), flat(email.text)):
            assert "Ana" in part
            assert "#1001" in part
            assert flat(reason_copy) in part
            if method is RefundMethod.none:
                assert flat(translations.gettext(NOT_CHARGED)) in part
            else:
                assert amount in part
            if window is not None and not window.immediate:
                assert flat(format_short_date(window.start, fmt)) in part
                assert flat(format_short_date(window.end, fmt)) in part
        assert "#1001" in email.subject

    @pytest.mark.parametrize("language", SUPPORTED_LOCALES)
    @pytest.mark.parametrize("method", list(RefundMethod))
    def test_refund_completed(
        self, renderer: Renderer, make_event: MakeEvent, method: RefundMethod, language: str
    ) -> None:
        event = matrix_event(make_event, Reason.customer_request, method, language)
        email = render(renderer, event, template="refund_completed")
        fmt = formatting_locale(LOCALE_TAGS[language], language)
        amount = flat(format_money(event.refund.amount, "EUR", fmt))  # type: ignore[union-attr]
        assert "#1001" in email.subject
        assert (amount in flat(email.text)) is (method is not RefundMethod.none)


class TestContent:
    def test_not_charged_without_refund(self, renderer: Renderer, make_event: MakeEvent) -> None:
        email = render(
            renderer, make_event(refund=None, **{"cancellation.reason": "payment_declined"})
        )
        assert "You were not charged for this order" in flat(email.text)
        assert "You were not charged for this order" in flat(email.html)

    def test_fraud_is_neutral_and_sells_nothing(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        email = render(renderer, make_event(**{"cancellation.reason": "fraud_suspected"}))
        for part in (flat(email.html), flat(email.text)):
            assert "could not verify the payment details" in part
            assert "fraud" not in part.lower()
            assert "Trail shoe v2" not in part
            assert "Order again" not in part
            assert "reorder" not in part

    def test_out_of_stock_leads_with_alternatives(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        email = render(renderer, make_event())
        heading = {"html": ">Your refund</h2>", "text": "Your refund\n---"}
        assert email.html.index("Trail shoe v2") < email.html.index(heading["html"])
        assert email.text.index("Trail shoe v2") < email.text.index(heading["text"])
        assert "You might like these instead" in email.html
        assert "You might like these instead" in email.text
        other = render(renderer, make_event(**{"cancellation.reason": "customer_request"}))
        assert other.html.index(heading["html"]) < other.html.index("Trail shoe v2")
        assert other.text.index(heading["text"]) < other.text.index("Trail shoe v2")
        assert "You might also like" in other.text

    def test_at_most_four_alternatives(self, renderer: Renderer, make_event: MakeEvent) -> None:
        alternatives = [
            {"name": f"Product {i}", "url": f"https://shop.example/p/{i}", "price": "10.00"}
            for i in range(8)
        ]
        email = render(renderer, make_event(alternatives=alternatives))
        assert "Product 3" in email.html
        assert "Product 4" not in email.html
        assert "Product 4" not in email.text

    def test_optional_blocks_degrade(self, renderer: Renderer, make_event: MakeEvent) -> None:
        bare = make_event(
            alternatives=[],
            reorder_url=None,
            **{
                "customer.first_name": None,
                "customer.locale": None,
                "cancellation.note": None,
                "order.number": None,
                "order.placed_at": None,
                "order.total": None,
                "order.items": [],
                "order.status_url": None,
                "refund.card_brand": None,
                "refund.card_last4": None,
            },
        )
        settings = make_settings(support_email=None, support_phone=None, reply_to=None)
        email = render(Renderer(settings), bare)
        text = flat(email.text)
        assert email.subject == "Your order 1001 has been cancelled"
        assert "Hello," in text
        assert "the card you paid with" in text
        assert "You might" not in text
        assert "View your order" not in text
        assert "Contact us through Example Shop" in text
        assert "None" not in text
        assert "None" not in flat(email.html)

    def test_card_destinations(self, renderer: Renderer, make_event: MakeEvent) -> None:
        text = flat(render(renderer, make_event()).text)
        assert "Visa ending in 4242" in text
        assert "your Visa card ending in 4242" in text
        no_brand = make_event(**{"refund.card_brand": None})
        assert "your card ending in 4242" in flat(render(renderer, no_brand).text)

    def test_links_and_reference(self, renderer: Renderer, make_event: MakeEvent) -> None:
        email = render(renderer, make_event())
        for part in (email.html, email.text):
            assert REFERENCE in part
            assert "https://notify.shop.example/status/" in part
            assert "https://shop.example/orders/1001" in part
            assert part.count("https://notify.shop.example/feedback/") == 2
            assert "help@shop.example" in part
            assert "+44 20 7946 0000" in part
        assert 'href="tel:+442079460000"' in email.html

    def test_year_shown_when_window_crosses_new_year(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        # Mon 28 Dec 2026 + 5 business days = Mon 4 Jan, + 10 = Mon 11 Jan 2027.
        event = make_event(**{"cancellation.cancelled_at": "2026-12-28T10:00:00Z"})
        text = flat(render(renderer, event).text)
        assert "between Mon, 4 Jan 2027 and Mon, 11 Jan 2027" in text

    def test_explicit_locale_wins(self, renderer: Renderer, make_event: MakeEvent) -> None:
        email = render(renderer, make_event(), locale="de")
        assert email.locale == "de"
        assert email.subject == "Ihre Bestellung #1001 wurde storniert"

    def test_unknown_template(self, renderer: Renderer, make_event: MakeEvent) -> None:
        with pytest.raises(UnknownTemplateError):
            render(renderer, make_event(), template="nope")

    def test_lists(self, renderer: Renderer) -> None:
        assert renderer.templates() == ["order_cancelled", "refund_completed"]
        assert renderer.locales()[0] == "en"
        assert sorted(renderer.locales()) == sorted(SUPPORTED_LOCALES)


class TestHtmlAndText:
    def test_text_has_no_tags(self, renderer: Renderer, make_event: MakeEvent) -> None:
        for language in SUPPORTED_LOCALES:
            email = render(renderer, make_event(), locale=language)
            assert not TAG.search(email.text), email.text
            assert "&amp;" not in email.text
            assert "&#" not in email.text

    def test_css_is_inlined(self, renderer: Renderer, make_event: MakeEvent) -> None:
        email = render(renderer, make_event())
        styles = re.findall(r"<style[^>]*>(.*?)</style>", email.html, re.S)
        assert len(styles) <= 1
        for css in styles:  # only the optional mobile tweaks may stay behind
            assert css.strip().startswith("@media")
            assert css.count("@media") == 1
        assert 'style="' in email.html
        assert '<td class="section" style="padding' in email.html
        assert "<link" not in email.html

    def test_layout_basics(self, renderer: Renderer, make_event: MakeEvent) -> None:
        email = render(renderer, make_event())
        assert '<html lang="en"' in email.html
        assert 'width="600"' in email.html
        assert 'class="preheader"' in email.html
        images = re.findall(r"<img [^>]*>", email.html)
        assert images
        assert all(re.search(r'alt="[^"]+"', img) for img in images)
        assert 'alt="Trail shoe"' in email.html

    @pytest.mark.parametrize("count", [50, 200])
    def test_long_order_stays_under_gmail_clipping(
        self, renderer: Renderer, make_event: MakeEvent, count: int
    ) -> None:
        items = [
            {
                "sku": f"SKU-{i:04d}",
                "name": f"Very comfortable merino wool hiking sock, size 42-44, colour {i}",
                "quantity": 1 + i % 3,
                "unit_price": "12.95",
                "image_url": f"https://cdn.shop.example/images/products/sock-{i:04d}.jpg",
                "url": f"https://shop.example/products/merino-hiking-sock-{i:04d}",
            }
            for i in range(count)
        ]
        alternatives = [
            {
                "name": f"Alternative {i}",
                "url": f"https://shop.example/p/alt-{i}",
                "image_url": f"https://cdn.shop.example/alt-{i}.jpg",
                "price": "19.90",
            }
            for i in range(4)
        ]
        event = make_event(alternatives=alternatives, **{"order.items": items})
        for language in SUPPORTED_LOCALES:
            email = render(renderer, event, locale=language)
            assert len(email.html.encode()) < GMAIL_CLIP_BYTES
        if count > 50:
            assert "…and 150 more items" in render(renderer, event).text


class TestInjection:
    def test_markup_and_template_syntax_are_inert(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        event = make_event(
            **{
                "customer.first_name": "<script>alert(1)</script>",
                "cancellation.note": "{{ 7*7 }} {% if true %}x{% endif %} <b>bold</b>",
                "order.number": '#1001"><img src=x onerror=alert(1)>',
                "refund.card_brand": "<i>Visa</i>",
            }
        )
        email = render(renderer, event)
        assert "<script" not in email.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
        assert "<b>bold</b>" not in email.html
        assert "<i>Visa</i>" not in email.html
        assert "onerror" not in re.sub(r"&[a-z#0-9]+;[^<]*", "", email.html).split("<body")[1] or (
            "<img src=x" not in email.html
        )
        assert "<img src=x" not in email.html
        for part in (email.html, email.text):
            assert "{{ 7*7 }}" in part
            assert "{% if true %}" in part
            assert "49" not in part
        assert "<script>alert(1)</script>" in email.text  # plain text is not HTML

    def test_newlines_never_leave_the_subject_line(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        event = make_event(**{"order.number": "#1001\r\nBcc: evil@x"})
        assert "\n" not in render(renderer, event).subject
        assert "\r" not in render(renderer, event).subject

    def test_output_is_escaped_as_markupsafe_escapes_it(self) -> None:
        class Html:
            def __html__(self) -> str:
                return "<b>kept</b>"

        class Text(str):
            pass

        corpus: list[object] = ["", "plain", "<a href='x'>&amp; \"q\"</a>", "é€ <>", Text("<i>")]
        corpus += [markupsafe.Markup("<b>safe</b> &amp;"), Html(), 42, 1.5, None, Decimal("9.90")]
        for value in corpus:
            out = escape_output(value)
            assert type(out) is str
            assert out == str(markupsafe.escape(value)), value

    def test_the_email_templates_escape_with_it_and_nest_markup_once(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        # A macro's result (markup) inside a partial inside the layout: escaped once, not twice.
        event = make_event(
            **{
                "alternatives": [
                    {"name": "R&D <Kit>", "url": "https://x.example/a?b=1&c=2", "price": "9.90"}
                ]
            }
        )
        html = render(renderer, event).html
        assert "R&amp;D &lt;Kit&gt;" in html
        assert "&amp;amp;" not in html
        assert "&amp;lt;" not in html


class TestTemplatesDir:
    def test_default_dir_is_the_repo_templates_in_a_checkout(self) -> None:
        assert default_templates_dir() == REPO / "templates"
        assert (default_templates_dir() / "email" / "order_cancelled.html").is_file()

    def test_override_template_partial_and_translation(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        email_dir = tmp_path / "email" / "partials"
        email_dir.mkdir(parents=True)
        (tmp_path / "email" / "order_cancelled.subject").write_text(
            "{{ _('Order %(number)s', number=order_number) }} - we are sorry\n"
        )
        (email_dir / "footer.html").write_text("<b>Custom footer for {{ shop_name }}</b>\n")
        po_dir = tmp_path / "locale" / "de" / "LC_MESSAGES"
        po_dir.mkdir(parents=True)
        (po_dir / "messages.po").write_text(
            'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
            'msgid "Hi %(name)s,"\nmsgstr "Servus %(name)s,"\n',
            encoding="utf-8",
        )
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        email = render(renderer, make_event())
        assert email.subject == "Order #1001 - we are sorry"
        assert "Custom footer for Example Shop" in email.html
        german = render(renderer, make_event(), locale="de")
        assert "Servus Ana," in german.text
        assert "Ihre Erstattung" in german.text  # the rest still comes from the package
        assert german.subject == "Bestellung #1001 - we are sorry"

    def test_override_can_add_a_language(self, tmp_path: Path, make_event: MakeEvent) -> None:
        po_dir = tmp_path / "locale" / "pt" / "LC_MESSAGES"
        po_dir.mkdir(parents=True)
        (po_dir / "messages.po").write_text(
            'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
            'msgid "Your order %(number)s has been cancelled"\n'
            'msgstr "O seu pedido %(number)s foi cancelado"\n',
            encoding="utf-8",
        )
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        assert "pt" in renderer.locales()
        email = render(renderer, make_event(**{"customer.locale": "pt-PT"}))
        assert (email.locale, email.subject) == ("pt", "O seu pedido #1001 foi cancelado")

    def test_a_template_that_fails_at_start_up_is_a_warning_not_a_crash(
        self, tmp_path: Path, make_event: MakeEvent, caplog: pytest.LogCaptureFixture
    ) -> None:
        (tmp_path / "email").mkdir()
        (tmp_path / "email" / "refund_completed.txt").write_text("{{ no_such_variable }}\n")
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        with caplog.at_level(logging.WARNING, logger="cancelnotify.mail.render"):
            renderer.warm_up()  # what `serve` runs at start-up: does not raise
        failed = {(r.template, r.locale) for r in caplog.records if hasattr(r, "template")}
        assert failed == {("refund_completed", language) for language in renderer.locales()}
        # The other template sends as ever; the broken one fails on its emails, as before.
        assert "order" in render(renderer, make_event()).subject.lower()
        with pytest.raises(jinja2.UndefinedError):
            render(renderer, make_event(), template="refund_completed")


class TestCompileTimeTranslation:
    """Messages translated when a language's templates compile give the emails that gettext at
    render time (the catalog taken from the context) gives."""

    @pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
    @pytest.mark.parametrize("template", ["order_cancelled", "refund_completed"])
    def test_same_email_as_runtime_gettext(
        self,
        renderer: Renderer,
        settings: Settings,
        make_event: MakeEvent,
        locale: str,
        template: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(render_module, "_GETTEXT_NAMES", frozenset())
        runtime = Renderer(settings)
        for reason in Reason:
            for method in RefundMethod:
                event = make_event(
                    **{
                        "cancellation.reason": reason.value,
                        "refund.method": method.value,
                        "order.items": [{"name": f"Item {i}", "quantity": 1} for i in range(52)],
                    }
                )
                assert render(renderer, event, template=template, locale=locale) == render(
                    runtime, event, template=template, locale=locale
                ), (reason, method)

    def test_a_template_that_shadows_gettext_keeps_it(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        (tmp_path / "email").mkdir()
        (tmp_path / "email" / "order_cancelled.subject").write_text(
            "{% macro _(text) %}{{ text|upper }}{% endmacro %}"
            "{{ _('Your refund') }} {{ order_number }}\n"
        )
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        email = render(renderer, make_event(), locale="de")
        assert email.subject == "YOUR REFUND #1001"
        assert "Ihre Erstattung" in email.text  # the other templates still translate

    def test_a_language_compiled_later_reads_the_files_of_start_up(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        subject = tmp_path / "email" / "order_cancelled.subject"
        subject.parent.mkdir()
        subject.write_text("{{ _('Your refund') }} {{ order_number }}\n")
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        subject.write_text("Edited after start-up\n")
        assert render(renderer, make_event(), locale="de").subject == "Ihre Erstattung #1001"


def failed_at(exc: BaseException) -> tuple[str, int | None]:
    """The template file and line where `exc` was raised (Jinja rewrites template frames)."""
    frames = traceback.extract_tb(exc.__traceback__)
    last = [frame for frame in frames if not frame.filename.endswith(".py")][-1]
    return Path(last.filename).name, last.lineno


class TestInlinedIncludes:
    """Included templates compile into their includer: the same emails as Jinja's includes."""

    @pytest.mark.parametrize("template", ["order_cancelled", "refund_completed"])
    def test_same_email_as_jinja_includes(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent, template: str
    ) -> None:
        as_written = Renderer(settings, inline_includes=False)
        for language in SUPPORTED_LOCALES:
            for reason in Reason:
                for method in RefundMethod:
                    event = matrix_event(make_event, reason, method, language)
                    assert render(renderer, event, template=template) == render(
                        as_written, event, template=template
                    ), (language, reason, method)

    def test_an_email_loads_no_partial_as_it_renders(
        self, settings: Settings, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        loaded: list[str] = []
        get_template = jinja2.Environment.get_template

        def recording(self: jinja2.Environment, name: Any, *args: Any, **kwargs: Any) -> Any:
            loaded.append(str(name))
            return get_template(self, name, *args, **kwargs)

        renderer = Renderer(settings)
        monkeypatch.setattr(jinja2.Environment, "get_template", recording)
        for template in ("order_cancelled", "refund_completed"):
            render(renderer, make_event(), template=template, locale="de")
        assert loaded  # the layouts and macros still are
        assert not [name for name in loaded if "/partials/" in name]

    def test_a_partial_sees_and_assigns_what_an_included_template_would(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        email_dir = tmp_path / "email" / "partials"
        email_dir.mkdir(parents=True)
        (email_dir / "greeting.txt").write_text(
            "{% set first_name = 'Partial' %}Hi {{ first_name }},\n"
            "{% for item in items %}{% include 'email/partials/line.txt' %}{% endfor %}"
        )
        # Jinja does not give an included template the `loop` of the for around the include.
        (email_dir / "line.txt").write_text("[{{ item.name }}{% if loop is defined %}!{% endif %}]")
        (tmp_path / "email" / "order_cancelled.subject").write_text(
            "{% include 'email/partials/greeting.txt' %} {{ first_name }}\n"
        )
        settings = make_settings(templates_dir=tmp_path)
        items = [{"name": "Garden chair", "quantity": 1}, {"name": "Cushion", "quantity": 2}]
        event = make_event(**{"order.items": items})
        email = render(Renderer(settings), event)
        assert email.subject == "Hi Partial, [Garden chair][Cushion] Ana"
        assert "Hi Partial,\n[Garden chair][Cushion]\n" in email.text
        assert email == render(Renderer(settings, inline_includes=False), event)

    def test_an_html_partial_in_a_text_part_is_still_escaped_as_html(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        (tmp_path / "email").mkdir()
        (tmp_path / "email" / "order_cancelled.subject").write_text(
            "{% include 'email/name.html' %} {{ first_name }}\n"
        )
        (tmp_path / "email" / "name.html").write_text("{{ first_name }}")
        (tmp_path / "email" / "self.txt").write_text(
            "{% if false %}{% include 'email/self.txt' %}{% endif %}ok"
        )
        (tmp_path / "email" / "order_cancelled.txt").write_text("{% include 'email/self.txt' %}\n")
        renderer = Renderer(make_settings(templates_dir=tmp_path))  # an include of itself: kept
        email = render(renderer, make_event(**{"customer.first_name": "Ana <3"}))
        assert email.subject == "Ana &lt;3 Ana <3"
        assert email.text == "ok\n"

    def test_an_error_in_a_partial_names_its_file_and_line(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        partial = tmp_path / "email" / "partials" / "greeting.html"
        partial.parent.mkdir(parents=True)
        partial.write_text("<p>Hi,</p>\n<p>{{ loyalty_points }}</p>\n")
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        with pytest.raises(jinja2.UndefinedError) as raised:
            render(renderer, make_event())
        assert failed_at(raised.value) == ("greeting.html", 2)

    def test_an_error_in_a_subjects_partial_names_it_in_the_previews_context_too(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        email_dir = tmp_path / "email"
        (email_dir / "partials").mkdir(parents=True)
        (email_dir / "order_cancelled.subject").write_text(
            "{% include 'email/partials/prefix.txt' %} {{ order_number }}\n"
        )
        (email_dir / "partials" / "prefix.txt").write_text("Order\n{{ order_prefix }}")
        renderer = Renderer(make_settings(templates_dir=tmp_path))
        with pytest.raises(jinja2.UndefinedError) as raised:
            renderer.template_context(
                make_event(), notification_id=NOTIFICATION_ID, reference=REFERENCE
            )
        assert failed_at(raised.value) == ("prefix.txt", 2)


class TestCatalogs:
    def _messages(self, path: Path) -> dict[Any, Any]:
        with path.open("rb") as handle:
            return {m.id: m for m in read_po(handle) if m.id}

    def test_every_message_translated_with_the_same_placeholders(self) -> None:
        locale_dir = REPO / "templates" / "locale"
        template = self._messages(locale_dir / "messages.pot")
        placeholder = re.compile(r"%\(\w+\)s")
        for language in SUPPORTED_LOCALES:
            if language == "en":
                continue
            catalog = self._messages(locale_dir / language / "LC_MESSAGES" / "messages.po")
            assert set(catalog) == set(template), language
            for msgid, message in catalog.items():
                assert not message.fuzzy, (language, msgid)
                strings = message.string if isinstance(message.string, tuple) else (message.string,)
                ids = msgid if isinstance(msgid, tuple) else (msgid,)
                for string in strings:
                    assert string, (language, msgid)
                    assert sorted(placeholder.findall(string)) == sorted(
                        placeholder.findall(ids[-1])
                    ), (language, msgid)

    def test_extraction_matches_the_committed_template(self, tmp_path: Path) -> None:
        pybabel = shutil.which("pybabel", path=str(Path(sys.executable).parent))
        assert pybabel is not None
        out = tmp_path / "messages.pot"
        subprocess.run(
            [pybabel, "-q", "extract", "-F", "babel.cfg", "-o", str(out), "templates/", "src/"],
            cwd=REPO,
            check=True,
        )
        assert set(self._messages(out)) == set(
            self._messages(REPO / "templates/locale/messages.pot")
        )

    def test_no_compiled_catalogs_in_the_tree(self) -> None:
        assert not list((REPO / "templates").rglob("*.mo"))


def test_negotiation_is_used(renderer: Renderer, make_event: MakeEvent) -> None:
    for tag, language in [("es-MX", "es"), ("pt-BR", "en"), ("nl_BE", "nl")]:
        assert render(renderer, make_event(**{"customer.locale": tag})).locale == language
        assert negotiate_locale(tag) == language


def test_settings_fixture_is_isolated(settings: Settings) -> None:
    assert settings.signing_key() == b"test-signing-key"


class TestFastWordwrap:
    """The text part's wrap filter gives what Jinja's own `wordwrap` gives, on every template."""

    @pytest.mark.parametrize("locale", ["en", "de", "fr", "es", "it", "nl"])
    @pytest.mark.parametrize("template", ["order_cancelled", "refund_completed"])
    def test_same_text_as_jinja_wordwrap(
        self,
        settings: Settings,
        make_event: MakeEvent,
        locale: str,
        template: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        fast = Renderer(settings)
        # The Renderer's environments take their filters when it is built.
        monkeypatch.setattr(render_module, "fast_wordwrap", jinja2.filters.do_wordwrap)
        slow = Renderer(settings)
        assert slow.environment.filters["wordwrap"] is jinja2.filters.do_wordwrap
        for reason in Reason:
            event = make_event(**{"cancellation.reason": reason.value, "customer.locale": locale})
            args = {"notification_id": NOTIFICATION_ID, "reference": REFERENCE}
            assert (
                fast.render(event, template=template, **args).text
                == slow.render(event, template=template, **args).text
            )

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "a",
            "  indented line  ",
            "x" * 200,
            "word " * 40,
            "\n\n  \n\t\nend\xa0 ",
            "a-b " * 30,
        ],
    )
    def test_edge_cases(self, text: str) -> None:
        env = jinja2.Environment(autoescape=False)  # noqa: S701 - plain text, no HTML
        for width in (10, 72):
            assert fast_wordwrap(text, width, False, None, False) == (
                jinja2.filters.do_wordwrap(env, text, width, False, None, False)
            )


def test_finish_text_trims_line_ends_and_collapses_blank_runs_as_the_regexes_did() -> None:
    # The text part's last step, formerly two regular expressions: the same text out.
    def with_regexes(text: str) -> str:
        text = re.sub(r"[ \t]+\n", "\n", text.strip() + "\n")
        return re.sub(r"\n{3,}", "\n\n", text)

    rng = random.Random(3)
    pieces = ["word", " ", "\t", "\n", "\n\n\n", "  \n", "é", "\xa0", "\r", "\x0b"]
    corpus = ["", "\n", " \n \n", "a\n\n\n\nb", "a \t\n\t \n\nb\t"]
    corpus += ["".join(rng.choices(pieces, k=rng.randint(1, 30))) for _ in range(5_000)]
    assert [finish_text(t) for t in corpus] == [with_regexes(t) for t in corpus]
