"""CSS inlined as templates compile: the documents css-inline made per message, and fallbacks."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from markupsafe import Markup

from cancelnotify.mail.inline import (
    InlineStyles,
    Stylesheet,
    TemplateInliner,
    Unprovable,
    canonical_document,
    check_context_free,
    document_difference,
    read_stylesheet,
)
from cancelnotify.mail.render import EmailEnvironment, Renderer, default_templates_dir
from cancelnotify.preview.scenarios import SCENARIOS
from cancelnotify.settings import Settings

from .conftest import NOTIFICATION_ID, REFERENCE, MakeEvent, make_settings

BASE = default_templates_dir() / "email" / "base.html"
MACROS = default_templates_dir() / "email" / "macros.html"


# Quoting, comments, raw text and parse errors the tokenizer must read as html5ever does.
TRICKY_MARKUP = """<p CLASS="muted" Class="reference">Upper case, duplicate class</p>
<p class=muted>unquoted</p><p class='muted' style='color: "red"'>single quotes</p>
<!-- <p class="muted">in a comment</p> --><!--><p class="label">after an abrupt comment</p><!--->
<p class="muted" title="a > b <p class=&quot;x&quot;>">quoted &gt;</p>
<img class="img" src="https://x.example/a.png" alt=""/><br/><hr class="muted" / >
<a  class = "btn" href=https://x.example/b >spaces</a>
<textarea class="muted"><p class="muted">not a tag</p></textarea>
<![CDATA[ <p class="muted"> ]]><?xml x?><p class="a&#32;muted">entity in class</p>
<table><td class="box-cell">no tr, no tbody</td></table>
<p class="muted" style="">empty style</p><span style="color: red;">no class</span>
<p class="muted"style="margin: 0">no space</p><P/class="muted">slash</P>
<div class="note
muted">newline in class</div><x-y class="muted">custom</x-y><image class="img">
{{ first_name }}<b class="reference">{{ '<p class="muted">escaped</p>' }}</b>
"""


@pytest.fixture(scope="module")
def per_message(settings: Settings) -> Renderer:
    return Renderer(settings, css_at_compile_time=False)


@pytest.fixture
def inliner(renderer: Renderer) -> TemplateInliner:
    """The renderer's compile-time inliner: its cache knows the styles the templates got."""
    env = renderer._environments["en"]
    assert isinstance(env, EmailEnvironment)
    assert env.inliner is not None
    return env.inliner


def write(root: Path, name: str, content: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def same_email(
    renderer: Renderer, reference: Renderer, make_event: MakeEvent, **changes: object
) -> str:
    """The HTML of `renderer` after checking it is `reference`'s document (and same text)."""
    event = make_event(**changes)
    got, want = (
        r.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE)
        for r in (renderer, reference)
    )
    assert (got.subject, got.text) == (want.subject, want.text)
    assert document_difference(got.html, want.html) is None
    return got.html


def compiled_email(templates_dir: Path, make_event: MakeEvent, **changes: object) -> str:
    """The HTML of a renderer over `templates_dir` that inlines CSS at compile time, checked to
    be the document (and text) of css-inline per message."""
    settings = make_settings(templates_dir=templates_dir)
    renderer = Renderer(settings)
    assert renderer.css_inlining.at_compile_time, renderer.css_inlining.reason
    return same_email(
        renderer, Renderer(settings, css_at_compile_time=False), make_event, **changes
    )


class TestEquivalence:
    """Every template, locale and preview scenario: the document css-inline made per message."""

    def test_shipped_templates_are_inlined_at_compile_time(self, renderer: Renderer) -> None:
        assert renderer.css_inlining.at_compile_time, renderer.css_inlining.reason

    @pytest.mark.parametrize("template", ["order_cancelled", "refund_completed"])
    @pytest.mark.parametrize("locale", ["en", "de", "fr", "es", "it", "nl"])
    def test_same_document_as_css_inline_per_message(
        self, renderer: Renderer, per_message: Renderer, template: str, locale: str
    ) -> None:
        assert locale in renderer.locales()
        for name, scenario in SCENARIOS.items():
            event = scenario.event()
            got, want = (
                r.render(
                    event,
                    notification_id=NOTIFICATION_ID,
                    reference=REFERENCE,
                    template=template,
                    locale=locale,
                )
                for r in (renderer, per_message)
            )
            assert (got.subject, got.text) == (want.subject, want.text), name
            difference = document_difference(got.html, want.html)
            assert difference is None, f"{name}: {difference}"
            assert "<style" not in got.html.split("</head>", 1)[1], name

    def test_markup_read_as_the_html_parser_reads_it(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        write(tmp_path, "email/partials/greeting.html", TRICKY_MARKUP)
        html = compiled_email(tmp_path, make_event)
        assert '<p class=muted style="margin: 0 0 12px 0;color: #6b7280;' in html
        assert '<p class="muted">not a tag</p></textarea>' in html

    def test_a_template_that_shadows_gettext(self, tmp_path: Path, make_event: MakeEvent) -> None:
        # Every language then shares templates that call gettext at render time.
        write(
            tmp_path,
            "email/partials/greeting.html",
            "{% macro _(text) %}<b>{{ text|upper }}</b>{% endmacro %}"
            '<p class="muted">{{ _("Hello,") }} {{ gettext("Need help?") }}</p>\n',
        )
        html = compiled_email(tmp_path, make_event, **{"customer.locale": "de-DE"})
        assert '<p class="muted" style="margin: 0 0 12px 0;color: #6b7280;' in html
        assert "<b>HELLO,</b> Brauchen Sie Hilfe?" in html

    def test_every_locale_is_covered(self, renderer: Renderer) -> None:
        assert sorted(renderer.locales()) == ["de", "en", "es", "fr", "it", "nl"]


class TestDocumentComparison:
    """The comparison the equivalence rests on sees a lost or changed style."""

    @pytest.fixture
    def html(self, per_message: Renderer) -> str:
        event = SCENARIOS["out_of_stock"].event()
        return per_message.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE).html

    def test_a_lost_style_is_a_difference(self, html: str) -> None:
        lost = re.sub(r' style="[^"]*"', "", html, count=7)
        assert document_difference(lost, html) is not None
        one_lost = html.replace('<h1 style="', '<h1 data-x="', 1)
        assert document_difference(one_lost, html) is not None

    def test_a_changed_declaration_is_a_difference(self, html: str) -> None:
        changed = html.replace("font-size: 24px", "font-size: 25px", 1)
        assert changed != html
        assert document_difference(changed, html) is not None

    def test_attribute_order_entities_and_tbody_are_not(self) -> None:
        a = '<table class="x" role="presentation"><tr><td>&#8199;&nbsp;é</td></tr></table>'
        b = (
            '<table role="presentation" class="x">'
            "<tbody><tr><td>\u2007&#160;&eacute;</td></tr></tbody></table>"
        )
        assert document_difference(a, b) is None
        assert canonical_document(a) == canonical_document(b)


class TestStylesheet:
    def test_the_shipped_stylesheet_is_context_free(self) -> None:
        sheet = read_stylesheet(BASE.read_text(encoding="utf-8"))
        assert sheet.doctype == "<!DOCTYPE html>"
        assert ".btn-cell" in sheet.css

    @pytest.mark.parametrize(
        "css",
        [
            "a, .btn, td.box-cell, .a.b, * { color: red }",
            "p { margin: 0 } /* a comment: .x > .y */ .q { content: '}' }",
            "@media (max-width: 600px) { .a td, a:hover { color: red } }",
            "@font-face { font-family: X; src: url(x.woff) } @import url(x.css);",
            "@supports (display: grid) { .a { color: red } }",
        ],
    )
    def test_context_free(self, css: str) -> None:
        check_context_free(css)

    @pytest.mark.parametrize(
        ("css", "reason"),
        [
            (".box td { color: red }", "'.box td'"),
            ("a:hover { color: red }", "'a:hover'"),
            ("td > p { margin: 0 }", "'td > p'"),
            ("p + p { margin: 0 }", "'p + p'"),
            ("[dir=rtl] { color: red }", "'[dir=rtl]'"),
            ("p::first-line { color: red }", "'p::first-line'"),
            ("@supports (display: grid) { .a .b { color: red } }", "'.a .b'"),
            ("@namespace svg url(http://www.w3.org/2000/svg);", "unexpected"),
            ("@scope (.card) { img { border: 0 } }", "@scope"),
            (".a { .b { color: red } }", "nests"),
            (".a { color: red", "unclosed"),
        ],
    )
    def test_not_context_free(self, css: str, reason: str) -> None:
        with pytest.raises(Unprovable, match=re.escape(reason)):
            check_context_free(css)

    def test_css_inline_keeps_media_rules_out_of_style_attributes(self) -> None:
        # check_context_free lets any selector through inside @media because of this.
        styles = InlineStyles(Stylesheet("@media all { p, .a p { color: red } }", ""))
        assert styles.style("p", None, None) is None
        assert styles.head.startswith("<style>@media all")


class TestFallback:
    """Templates compile-time inlining cannot prove right: css-inline per message, as before."""

    @pytest.mark.parametrize(
        ("name", "content", "reason"),
        [
            (
                "email/base.html",
                BASE.read_text(encoding="utf-8").replace(
                    ".label { color: #6b7280; }", ".box .label { color: #6b7280; }"
                ),
                "selector '.box .label' is not context-free",
            ),
            (
                "email/base.html",
                BASE.read_text(encoding="utf-8").replace(
                    "</style>", "</style>\n<style>p { color: red; }</style>"
                ),
                "base.html has 2 <style> blocks",
            ),
            (
                "email/macros.html",
                MACROS.read_text(encoding="utf-8").replace(
                    '<td class="box-cell value amount">{% else %}<td class="box-cell value">',
                    "<td class=\"box-cell value{{ ' amount' if emphasis }}\">{% else %}"
                    '<td class="box-cell value">',
                ),
                "email/macros.html: <td> has a class attribute built by an expression",
            ),
            (
                "email/partials/greeting.html",
                '<p{% if first_name is not none %} class="muted"{% endif %}>Hello,</p>\n',
                "email/partials/greeting.html: <p> is left open where the output ends",
            ),
            (
                "email/partials/greeting.html",
                '<p class="muted" style="{{ "color: red" }}">Hello,</p>\n',
                "<p> has a style attribute built by an expression",
            ),
            (
                "email/partials/greeting.html",
                "<style>.muted { color: red; }</style><p>Hello,</p>\n",
                "a <style> block other than the one at base.html's top level",
            ),
            (
                "email/partials/greeting.html",
                "{% filter upper %}<p>Hello,</p>{% endfilter %}\n",
                "a {% filter %} block changes markup",
            ),
            (
                "email/order_cancelled.html",
                '<!DOCTYPE html><html><body><p class="muted">{{ subject }}</p></body></html>\n',
                "email/order_cancelled.html does not extend email/base.html",
            ),
        ],
        ids=[
            "descendant-selector",
            "second-style-block",
            "class-built-by-an-expression",
            "if-inside-a-start-tag",
            "style-built-by-an-expression",
            "style-block-in-a-partial",
            "filter-block",
            "email-without-base",
        ],
    )
    def test_falls_back_to_per_message_with_the_same_output(
        self, tmp_path: Path, make_event: MakeEvent, name: str, content: str, reason: str
    ) -> None:
        write(tmp_path, name, content)
        settings = make_settings(templates_dir=tmp_path)
        renderer = Renderer(settings)
        assert not renderer.css_inlining.at_compile_time
        assert reason in renderer.css_inlining.reason
        reference = Renderer(settings, css_at_compile_time=False)
        for locale in ("en", "de"):
            got, want = (
                r.render(
                    make_event(),
                    notification_id=NOTIFICATION_ID,
                    reference=REFERENCE,
                    locale=locale,
                )
                for r in (renderer, reference)
            )
            assert got == want  # the very same path: byte for byte

    def test_the_reason_is_logged_once(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        write(tmp_path, "email/partials/greeting.html", '<p class="{{ first_name }}">Hi</p>\n')
        with caplog.at_level(logging.INFO, logger="cancelnotify.mail.render"):
            Renderer(make_settings(templates_dir=tmp_path)).compile_all()
        messages = [r.getMessage() for r in caplog.records if r.name == "cancelnotify.mail.render"]
        assert len(messages) == 1
        assert messages[0].startswith("CSS inlined per message: email/partials/greeting.html")

    def test_a_context_free_override_of_base_is_used(
        self, tmp_path: Path, make_event: MakeEvent
    ) -> None:
        base = BASE.read_text(encoding="utf-8").replace("#1d4ed8", "#be123c")
        write(tmp_path, "email/base.html", base.replace("</style>", "h2 { color: red; }\n</style>"))
        html = compiled_email(tmp_path, make_event)
        assert "color: #be123c" in html
        assert re.search(r'<h2 style="[^"]*color: red', html)


class TestRenderTimeMarkup:
    """Tags that only exist at render time (a shop's translation, computed markup)."""

    def test_tags_in_translations(self, tmp_path: Path, make_event: MakeEvent) -> None:
        po = tmp_path / "locale" / "de" / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True)
        po.write_text(
            'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
            'msgid "Was this email helpful?"\n'
            'msgstr "War diese <a href=\\"https://shop.example/faq\\">E-Mail</a> hilfreich?"\n\n'
            'msgid "Email: %(address)s"\n'
            'msgstr "<span class=\\"muted\\">E-Mail:</span> <strong>%(address)s</strong>"\n',
            encoding="utf-8",
        )
        html = compiled_email(tmp_path, make_event, **{"customer.locale": "de-DE"})
        assert '<a href="https://shop.example/faq" style="color: #1d4ed8;' in html
        assert '<span class="muted" style="color: #6b7280;' in html
        assert '<strong><a href="mailto:help@shop.example" style="color: #1d4ed8;' in html

    def test_markup_computed_at_render_time(self, tmp_path: Path, make_event: MakeEvent) -> None:
        write(
            tmp_path,
            "email/partials/greeting.html",
            "<p>{{ ('<span class=\"reference\">' ~ order_number ~ '</span>')|safe }}</p>\n",
        )
        html = compiled_email(tmp_path, make_event)
        assert '<span class="reference" style="font-family: Menlo' in html

    def test_styled_markup_comes_back_unchanged(
        self, renderer: Renderer, inliner: TemplateInliner
    ) -> None:
        event = SCENARIOS["many_alternatives"].event()
        html = renderer.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE).html
        body = Markup(html[html.index("<body") :])  # noqa: S704 - our own output
        assert inliner.style_markup(body) == body  # the whole styled email is a fixed point
        unstyled = Markup('<p class="muted">x</p>')
        once = inliner.style_markup(unstyled)
        assert once != unstyled
        assert inliner.style_markup(once) == once

    def test_unsupported_markup_is_left_alone_and_logged(
        self, inliner: TemplateInliner, caplog: pytest.LogCaptureFixture
    ) -> None:
        value = Markup("<style>p { color: red }</style><p>x</p>")
        with caplog.at_level(logging.WARNING, logger="cancelnotify.mail.inline"):
            assert inliner.style_markup(value) is value
        assert "not styled as css-inline would style it" in caplog.text
