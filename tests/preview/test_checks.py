"""Each check fires on a crafted bad template or data, and the default templates stay clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from cancelnotify.preview import checks
from cancelnotify.preview.checks import UsedMessage, Warning
from cancelnotify.preview.scenarios import SCENARIOS
from cancelnotify.preview.service import Workbench
from tests.preview.conftest import MakeWorkbench, write

GOOD_TEXT = "See https://shop.example/p/a and write to help@shop.example."
GOOD_HTML = (
    '<p><a href="https://shop.example/p/a">A</a> <a href="mailto:help@shop.example">mail</a>'
    ' <a href="tel:+4420">call</a> <img src="https://cdn.example/a.png" alt="A"></p>'
)


def preview(
    wb: Workbench, scenario: str = "out_of_stock", locale: str | None = "de"
) -> list[Warning]:
    return list(
        wb.preview(SCENARIOS[scenario].event(), template="order_cancelled", locale=locale).warnings
    )


def by_check(warnings: list[Warning], check: str) -> list[Warning]:
    return [w for w in warnings if w.check == check]


class TestPureChecks:
    def test_clean_html_has_no_findings(self) -> None:
        assert checks.check_links(GOOD_HTML) == []
        assert checks.check_image_alt(GOOD_HTML) == []
        assert checks.check_text_links(GOOD_HTML, GOOD_TEXT) == []
        assert checks.check_html_size(GOOD_HTML) == []
        assert checks.check_subject_length("Your order #1001 has been cancelled") == []

    def test_html_over_102_kb(self) -> None:
        html = "<p>" + "x" * (102 * 1024) + "</p>"
        [warning] = checks.check_html_size(html)
        assert warning.check == "html-size"
        assert "104,455 bytes" in warning.message

    @pytest.mark.parametrize(
        ("html", "message"),
        [
            ('<a href="/orders/1">x</a>', "Relative link '/orders/1'"),
            ('<a href="#">x</a>', "Relative link '#'"),
            ('<a href="http://shop.example/p">x</a>', "Not HTTPS: http://shop.example/p"),
            ('<img src="http://cdn.example/a.png" alt="a">', "Not HTTPS"),
            ('<a href="javascript:alert(1)">x</a>', "Unsafe scheme javascript"),
        ],
    )
    def test_bad_links(self, html: str, message: str) -> None:
        [warning] = checks.check_links("<body>\n" + html)
        assert warning.check == "insecure-link"
        assert message in warning.message
        assert warning.where.startswith("HTML line 2: <")

    def test_loopback_http_is_dev_and_allowed(self) -> None:
        html = '<a href="http://127.0.0.1:8000/v1/s/x">s</a><a href="http://localhost/f">f</a>'
        assert checks.check_links(html) == []

    def test_image_without_alt(self) -> None:
        [warning] = checks.check_image_alt('<img src="https://cdn.example/a.png">')
        assert warning == Warning(
            "image-alt",
            "Image without alt text",
            'HTML line 1: <img src="https://cdn.example/a.png">',
        )
        assert checks.check_image_alt('<img src="https://cdn.example/a.png" alt="">') == []

    def test_text_part_missing_a_link(self) -> None:
        html = '<a href="https://shop.example/p/a">a</a><a href="mailto:x@shop.example">x</a>'
        text = "Only https://shop.example/p/a-v2 here"  # a longer URL is not the same link
        found = checks.check_text_links(html, text)
        assert [w.message for w in found] == [
            "The text part does not contain https://shop.example/p/a",
            "The text part does not contain x@shop.example",
        ]

    def test_subject_too_long_for_mobile(self) -> None:
        [warning] = checks.check_subject_length("x" * 61)
        assert warning.check == "subject-length"
        assert "61 characters" in warning.message

    def test_untranslated_strings(self) -> None:
        used = [
            UsedMessage("Order again", "email/a.html:3"),
            UsedMessage("Need help?", "email/a.html:4"),
            UsedMessage("Check the status", "email/a.html:5"),
            UsedMessage("PayPal", "mail/render.py"),
            UsedMessage("Placed on %(date)s", "email/a.html:6"),
        ]
        catalog: dict[str, str | None] = {
            "Need help?": None,
            "Check the status": "Check the status",
            "PayPal": "PayPal",
            "Placed on %(date)s": "Bestellt am %(date)s",
        }
        found = checks.check_untranslated("de", used, catalog)
        assert [(w.message, w.where) for w in found] == [
            ("'Order again' is missing from the de catalog", "email/a.html:3"),
            ("'Need help?' is empty or fuzzy in the de catalog", "email/a.html:4"),
            ("'Check the status' is identical to the source in the de catalog", "email/a.html:5"),
        ]
        assert checks.check_untranslated("en", used, {}) == []


class TestTemplateChecks:
    """Crafted templates in a TEMPLATES_DIR, through the whole workbench."""

    def test_undefined_variable_stops_the_render(
        self, tmp_path: Path, make_workbench: MakeWorkbench
    ) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            "<html><body>\n<p>{{ reason_text }}</p>\n<p>{{ refund_total }}</p>\n</body></html>",
        )
        found = by_check(preview(make_workbench(tmp_path)), "undefined-variable")
        assert found[0] == Warning(
            "undefined-variable", "'refund_total' is undefined", "email/order_cancelled.html:3"
        )

    def test_undeclared_variable_in_a_branch_not_taken(
        self, tmp_path: Path, make_workbench: MakeWorkbench
    ) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            "<html><body>\n{% if false %}\n{{ coupon_code }}\n{% endif %}\n</body></html>",
        )
        [warning] = by_check(preview(make_workbench(tmp_path)), "undefined-variable")
        assert warning == Warning(
            "undefined-variable",
            "'coupon_code' is not provided by the renderer",
            "email/order_cancelled.html:3",
        )

    def test_html_size(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path, "email/order_cancelled.html", "<html><body>{{ 'x' * 110000 }}</body></html>"
        )
        [warning] = by_check(preview(make_workbench(tmp_path)), "html-size")
        assert warning.where == "HTML part"

    def test_relative_link(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            '<html><body>\n<a href="/orders">o</a></body></html>',
        )
        found = by_check(preview(make_workbench(tmp_path)), "insecure-link")
        assert [w.message for w in found] == ["Relative link '/orders'"]

    def test_http_link_in_serve(self, make_workbench: MakeWorkbench) -> None:
        # Status and feedback links follow PUBLIC_BASE_URL: plain HTTP on a real host is flagged.
        wb = make_workbench(public_base_url="http://notify.shop.example")
        found = by_check(preview(wb), "insecure-link")
        assert found
        assert all("Not HTTPS: http://notify.shop.example/" in w.message for w in found)

    def test_image_alt(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            '<html><body><img src="https://cdn.example/logo.png"></body></html>',
        )
        [warning] = by_check(preview(make_workbench(tmp_path)), "image-alt")
        assert "logo.png" in warning.where

    def test_text_missing_link(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            '<html><body><a href="https://shop.example/sale">Sale</a></body></html>',
        )
        found = by_check(preview(make_workbench(tmp_path)), "text-missing-link")
        assert "The text part does not contain https://shop.example/sale" in [
            w.message for w in found
        ]

    def test_subject_length(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path,
            "email/order_cancelled.subject",
            "{% trans number=order_number %}We are very sorry to tell you that your order "
            "{{ number }} has been cancelled today{% endtrans %}",
        )
        [warning] = by_check(preview(make_workbench(tmp_path)), "subject-length")
        assert warning.where.startswith("Subject: We are very sorry")

    def test_untranslated_string(self, tmp_path: Path, make_workbench: MakeWorkbench) -> None:
        write(
            tmp_path,
            "email/order_cancelled.html",
            "<html><body>\n<p>{% trans %}A sentence nobody has translated yet{% endtrans %}</p>\n"
            "<p>{% trans %}Order again{% endtrans %}</p></body></html>",
        )
        found = by_check(preview(make_workbench(tmp_path), locale="de"), "untranslated")
        assert [(w.message, w.where) for w in found] == [
            (
                "'A sentence nobody has translated yet' is missing from the de catalog",
                "email/order_cancelled.html:2",
            )
        ]
        assert by_check(preview(make_workbench(tmp_path), locale="en"), "untranslated") == []

    def test_css_that_cannot_be_inlined_at_compile_time(
        self, tmp_path: Path, make_workbench: MakeWorkbench
    ) -> None:
        base = (Path(__file__).parents[2] / "templates/email/base.html").read_text()
        # A descendant selector: an element's style depends on where it sits.
        write(
            tmp_path,
            "email/base.html",
            base.replace("<style>\n", "<style>\n.section p { color: red; }\n"),
        )
        [warning] = by_check(preview(make_workbench(tmp_path)), "css-per-message")
        assert "selector" in warning.message
        assert warning.where == "email/base.html"


class TestDefaultTemplates:
    def test_no_warnings_in_any_template_locale_or_scenario(
        self, default_workbench: Workbench
    ) -> None:
        """The shipped templates pass every check in every locale and scenario."""
        wb = default_workbench
        combos = 0
        for template in wb.templates():
            for scenario in wb.scenarios():
                event = scenario.event()
                for locale in wb.locales():
                    combos += 1
                    found = wb.preview(event, template=template, locale=locale).warnings
                    assert not found, (template, scenario.name, locale, found)
        assert combos == 2 * len(SCENARIOS) * 6
