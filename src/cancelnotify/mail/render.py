"""Render an email (subject, inlined HTML, plain text) from a cancellation event, per locale.

The gettext catalogs and one Jinja2 environment per language are built once, in
`Renderer.__init__`; each language's templates compile with its messages already translated
(English at start-up, another language on its first email) and, when base.html's stylesheet
allows it, with the CSS already inlined into their tags (`inline.py`); otherwise css-inline runs
on every rendered HTML part. `Renderer.render` is synchronous, CPU-only and safe to call from
threads.
Everything that carries customer data is computed here into plain strings, and the HTML templates
escape it (autoescape on); the text templates print it as is.
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import io
import logging
import re
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import CodeType
from typing import Any, Final

from babel import Locale, UnknownLocaleError
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    FunctionLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    nodes,
    pass_context,
    pass_eval_context,
    select_autoescape,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

try:  # markupsafe's escaping itself, without the Markup object around its result
    from markupsafe._speedups import _escape_inner
except ImportError:  # pragma: no cover - a markupsafe built without its C speedups
    from markupsafe._native import _escape_inner

import cancelnotify
from cancelnotify.i18n import (
    DEFAULT_LOCALE,
    SUPPORTED_LOCALES,
    format_count,
    format_long_date,
    format_money,
    format_short_date,
    formatting_locale,
    merge_refund_policy,
    negotiate_locale,
    refund_window,
)
from cancelnotify.links import click_url, feedback_url, open_pixel_url, status_url
from cancelnotify.mail.inline import (
    BASE_TEMPLATE,
    STYLE_FILTER,
    InlineStyles,
    TemplateInliner,
    Unprovable,
    css_inliner,
    read_stylesheet,
)
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1, Reason, Refund, RefundMethod
from cancelnotify.settings import Settings

log = logging.getLogger(__name__)

MAX_ALTERNATIVES: Final = 4
# Beyond this many lines the rest is summarised, so even a 200-line order stays far below
# Gmail's 102 KB clipping limit.
MAX_ITEMS_SHOWN: Final = 50
TEMPLATE_PARTS: Final = ("subject", "html", "txt")


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, at render time."""
    return message


# The reason in customer words. Sensitive reasons stay neutral: we never accuse anyone.
REASON_COPY: Final[Mapping[Reason, str]] = {
    Reason.customer_request: N_("We have cancelled your order, as you asked."),
    Reason.out_of_stock: N_(
        "We are sorry: an item in your order sold out before we could send it, "
        "so we had to cancel the order."
    ),
    Reason.payment_declined: N_(
        "The payment for this order did not go through, so we could not complete it "
        "and have cancelled it."
    ),
    Reason.fraud_suspected: N_(
        "We could not verify the payment details for this order, so we were unable "
        "to complete it and have cancelled it."
    ),
    Reason.address_unverifiable: N_(
        "We could not confirm the delivery address for this order, so we were unable "
        "to send it and have cancelled it."
    ),
    Reason.shipping_unavailable: N_(
        "We are sorry: we cannot deliver to your address at the moment, "
        "so we had to cancel the order."
    ),
    Reason.pricing_error: N_(
        "We are sorry: an item in your order was shown at the wrong price, "
        "so we had to cancel the order."
    ),
    Reason.other: N_("We are sorry: we had to cancel your order."),
}

# Short labels for the refund summary table.
_DESTINATION_LABEL: Final[Mapping[RefundMethod, str]] = {
    RefundMethod.paypal: N_("PayPal"),
    RefundMethod.bank_transfer: N_("Bank account"),
    RefundMethod.store_credit: N_("Store credit"),
    RefundMethod.gift_card: N_("Gift card"),
}
# The destination inside "We are refunding {amount} to {destination}." (store credit and gift
# cards have sentences of their own).
_DESTINATION_PHRASE: Final[Mapping[RefundMethod, str]] = {
    RefundMethod.paypal: N_("your PayPal account"),
    RefundMethod.bank_transfer: N_("your bank account"),
}

_PHONE_CHARS = re.compile(r"[^0-9+]")
_WARM_UP_ID: Final = uuid.UUID(int=0)  # the warm-up render's notification: links to nowhere real


class UnknownTemplateError(LookupError):
    """No template of that name exists in TEMPLATES_DIR or the packaged defaults."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """One email as the customer will read it."""

    subject: str
    html: str
    text: str
    locale: str


@dataclass(frozen=True, slots=True)
class CssInlining:
    """Where an email's CSS is inlined, and why there."""

    at_compile_time: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ItemView:
    name: str
    quantity: str
    price: str | None
    image_url: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class ProductView:
    name: str
    url: str
    image_url: str | None
    price: str | None


@dataclass(frozen=True, slots=True)
class RefundView:
    method: str
    amount: str
    destination: str
    destination_label: str
    window_start: str | None
    window_end: str | None


def default_templates_dir() -> Path:
    """The packaged templates: `cancelnotify/_templates` in a wheel, `templates/` in a checkout."""
    package_dir = Path(cancelnotify.__file__).resolve().parent
    bundled = package_dir / "_templates"
    if bundled.is_dir():
        return bundled
    return package_dir.parents[1] / "templates"


def template_search_path(settings: Settings) -> list[Path]:
    """Where templates and catalogs are looked up, first match first: TEMPLATES_DIR, defaults."""
    dirs = [default_templates_dir()]
    if settings.templates_dir is not None:
        dirs.insert(0, settings.templates_dir)
    return dirs


def _po_path(directory: Path, language: str) -> Path:
    return directory / "locale" / language / "LC_MESSAGES" / "messages.po"


def available_locales(search_path: list[Path]) -> list[str]:
    """The built-in languages plus any that a catalog in the search path adds."""
    found = set(SUPPORTED_LOCALES)
    for directory in search_path:
        locale_dir = directory / "locale"
        if not locale_dir.is_dir():
            continue
        for child in locale_dir.iterdir():
            if (child / "LC_MESSAGES" / "messages.po").is_file():
                try:
                    Locale.parse(child.name)
                except (UnknownLocaleError, ValueError):
                    continue
                found.add(child.name)
    return sorted(found, key=lambda name: (name != DEFAULT_LOCALE, name))


def load_translations(search_path: list[Path], language: str) -> gettext.NullTranslations:
    """Compile the `.po` catalogs for `language` in memory; an override's messages win.

    No `.mo` file is read or written: each catalog is parsed with Babel and turned into a
    gettext-compatible object at start-up. Fuzzy and untranslated entries are left out, so they
    fall back to the English source text.
    """
    merged: Catalog | None = None
    for directory in reversed(search_path):  # defaults first, overrides laid on top
        path = _po_path(directory, language)
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            if not (message.id and message.string) or message.fuzzy:
                continue
            existing = merged.get(message.id)
            if existing is None:
                merged[message.id] = message
            else:  # Catalog.__setitem__ would keep the old string; replace it explicitly
                existing.string = message.string
                existing.flags.discard("fuzzy")
    if merged is None:
        return gettext.NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, merged, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer)


def _substitute(translated: str, variables: Mapping[str, object], *, html: bool) -> str:
    # A value that ends in a period ("mar. 8 déc.") would double the sentence's own period.
    for key, value in variables.items():
        if isinstance(value, str) and value.endswith("."):
            translated = translated.replace(f"%({key})s.", f"%({key})s")
    if not html:
        return translated % variables
    # What `Markup(translated) % variables` gives (values escaped, numbers kept for %d), without
    # markupsafe's per-argument helper objects (a third of the gettext time, profiled) or a
    # Markup per value (`escape_output`: 6.7 -> 3.1 us for a three-value message).
    safe = {k: v if isinstance(v, int | float) else escape_output(v) for k, v in variables.items()}
    return Markup(translated % safe)  # noqa: S704 - catalogs are trusted files, values escaped


@pass_context
def _gettext(context: Context, message: str, **variables: object) -> str:
    # Jinja's newstyle gettext, except that the catalog comes from the render context (so one
    # Environment serves every locale, thread-safely) and dates ending in "." read cleanly.
    translations: gettext.NullTranslations = context["i18n"]
    translated = translations.gettext(message)
    return _substitute(translated, variables, html=context.eval_ctx.autoescape)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, num: int, **variables: object) -> str:
    translations: gettext.NullTranslations = context["i18n"]
    translated = translations.ngettext(singular, plural, num)
    variables.setdefault("num", num)
    return _substitute(translated, variables, html=context.eval_ctx.autoescape)


def _text_heading(title: str) -> str:
    return f"{title}\n{'-' * len(title)}"


def finish_text(text: str) -> str:
    """The text part as sent: no trailing blanks on a line, never two blank lines in a row.

    A loop over the lines rather than two regular expressions over the whole text: those cost
    70 us per email, most of it stepping through non-ASCII text (profiled); a test compares.
    """
    out: list[str] = []
    blank = False
    for raw in text.strip().split("\n"):
        line = raw.rstrip(" \t")
        if line or not blank:
            out.append(line)
        blank = not line
    out.append("")
    return "\n".join(out)


def _one_line(text: str) -> str:
    # A subject is one line whatever a template or a translation does with whitespace.
    return " ".join(text.split())


_TEXTWRAP_WHITESPACE: Final = "\t\n\x0b\x0c\r "


def fast_wordwrap(
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    """Jinja's `wordwrap`, without calling textwrap for lines that already fit.

    The text part wraps every paragraph; textwrap was a third of the render time, spent mostly
    on blank and short lines. A line that fits comes out as textwrap would return it: trailing
    (ASCII) whitespace dropped, a blank line empty. A test compares both on every template.
    """
    newline = "\n" if wrapstring is None else wrapstring
    out = []
    for line in s.splitlines():
        if len(line) <= width:
            out.append(line.rstrip(_TEXTWRAP_WHITESPACE))
        else:
            out.append(newline.join(_wrap(line, width, break_long_words, break_on_hyphens)))
    return newline.join(out)


@functools.lru_cache(maxsize=2048)
def _wrap(line: str, width: int, break_long_words: bool, break_on_hyphens: bool) -> tuple[str, ...]:
    # Most long lines are a translated sentence without customer data: the same in every email.
    wrapped = textwrap.wrap(
        line,
        width=width,
        expand_tabs=False,
        replace_whitespace=False,
        break_long_words=break_long_words,
        break_on_hyphens=break_on_hyphens,
    )
    return tuple(wrapped)


def i18n_environment(
    loader: BaseLoader,
    *,
    escape_all: bool,
    catalog: gettext.NullTranslations | None = None,
    inliner: TemplateInliner | None = None,
    inline_includes: bool = False,
) -> Environment:
    """A strict Jinja2 environment whose gettext takes its catalog from the render context
    (`i18n`), so one environment serves every locale: emails and the status pages use it.

    `.html` templates and strings are always autoescaped; other files (an email's `.txt` and
    `.subject`) only with `escape_all`. With `catalog`, the environment serves that one language
    and translates literal messages when it compiles a template; with `inliner`, HTML templates
    compile with their CSS inlined; with `inline_includes`, an included template compiles into
    the one that includes it (see `EmailEnvironment`).
    """
    rewrites = catalog is not None or inliner is not None or inline_includes
    env = (EmailEnvironment if rewrites else FlatGlobalsEnvironment)(
        loader=loader,
        autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=escape_all
        ),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        # A dict, not the locked LRU: ~21 includes per email look templates up (3-5 % of a
        # render, benchmarks/render.py); a template directory is small and fixed.
        cache_size=-1,
    )
    env.policies["ext.i18n.trimmed"] = True
    # What `install_gettext_callables(newstyle=True)` does, with our context-aware callables.
    setattr(env, "newstyle_gettext", True)  # noqa: B010 - set by the i18n extension
    env.globals.update(gettext=_gettext, _=_gettext, ngettext=_ngettext)
    if isinstance(env, EmailEnvironment):
        if catalog is not None:
            env.catalog = catalog
            env.filters[_TRANSLATED_FILTER] = _translated
        if inliner is not None:
            env.inliner = inliner
            env.filters[STYLE_FILTER] = inliner.style_markup
        env.inline_includes = inline_includes
    return env


# `{% trans %}` blocks compile to calls of these (newstyle gettext), like `_("...")` does.
# ngettext stays a runtime call: its plural form depends on the count.
_GETTEXT_NAMES: Final = frozenset({"gettext", "_"})
_TRANSLATED_FILTER: Final = "_cancelnotify_translated"


@pass_eval_context
def _translated(eval_ctx: EvalContext, translated: str, /, **variables: object) -> str:
    # `_gettext` after the catalog lookup, which was done when the template was compiled.
    return _substitute(translated, variables, html=eval_ctx.autoescape)


class _TranslateLiterals(NodeTransformer):
    """`_("literal", **variables)` -> `"translated"|_cancelnotify_translated(**variables)`.

    A filter, not a call: Jinja runs every call through `Context.call` (75 per email, the largest
    Jinja cost in cProfile) but binds filters when it compiles, and its optimizer evaluates a
    filter whose arguments are constants, so a message without variables becomes template text.
    """

    def __init__(self, catalog: gettext.NullTranslations) -> None:
        self._catalog = catalog

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        self.generic_visit(node)  # nested messages first: _("%(label)s:", label=_("Yes"))
        func, args = node.node, node.args
        if not (
            isinstance(func, nodes.Name)
            and func.name in _GETTEXT_NAMES
            and len(args) == 1
            and isinstance(args[0], nodes.Const)
            and isinstance(args[0].value, str)
            and node.dyn_args is None
            and node.dyn_kwargs is None
            and all(k.key not in {"message", "context"} for k in node.kwargs)  # _gettext: TypeError
        ):
            return node
        translated = nodes.Const(self._catalog.gettext(args[0].value), lineno=node.lineno)
        return nodes.Filter(
            translated, _TRANSLATED_FILTER, [], node.kwargs, None, None, lineno=node.lineno
        )


class FlatGlobalsEnvironment(Environment):
    """Templates take a copy of the globals as they load, a dict instead of Jinja's ChainMap.

    Every render and every include builds a Context, which copies the globals (and the set of
    their names): a ChainMap is iterated key by key in Python, 6 % of a render (profiled).
    Jinja already asks not to change globals once templates are loaded; ours are set before.
    """

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


def escape_output(value: object) -> str:
    """`str(markupsafe.escape(value))`, for what a template writes out.

    Jinja's compiled templates call `escape` only around an expression they output, and output
    is only ever joined (into `Markup(concat(...))` where markup is needed: a macro's result, a
    `{% set %}` block), so the Markup object markupsafe wraps each value in is made and dropped:
    77 times per email. The same characters come out (a test compares on a corpus).
    """
    if value.__class__ is str:
        return _escape_inner(value)
    if hasattr(value, "__html__"):
        return str(value.__html__())
    return _escape_inner(str(value))


class _OutputTemplate(Template):
    """A template whose output expressions are escaped by `escape_output` (render 735 -> 672
    us per email, alternating in one process; the golden emails are byte for byte the same)."""

    @classmethod
    def from_code(
        cls,
        environment: Environment,
        code: CodeType,
        globals: MutableMapping[str, Any],
        uptodate: Callable[[], bool] | None = None,
    ) -> Template:
        template = super().from_code(environment, code, globals, uptodate)
        # The compiled module's namespace, where its render functions look `escape` up.
        template.root_render_func.__globals__["escape"] = escape_output
        return template


class EmailEnvironment(FlatGlobalsEnvironment):
    """An environment that rewrites templates as they compile: with a `catalog` (one language)
    literal messages are looked up, with an `inliner` HTML templates get their CSS inlined, with
    `inline_includes` an included template's body is compiled into the including one.

    Renders as `i18n_environment(...)` without any does when the render context's `i18n` is
    this catalog and css-inline runs on the output, minus a gettext call per message, the
    css-inline pass per email and a Context per include.
    """

    template_class = _OutputTemplate
    catalog: gettext.NullTranslations | None = None
    inliner: TemplateInliner | None = None
    inline_includes: bool = False
    # Set when a compiled template assigns `_`, `gettext` or `ngettext` itself: its includes see
    # that variable, not our gettext, so their messages must not be translated ahead of time.
    shadows_gettext: bool = False

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # The one hook between parsing and code generation (`compile` and `parse` both call it).
        ast = super()._parse(source, name, filename)
        if self.catalog is not None:
            if _binds_gettext_names(ast):
                self.shadows_gettext = True
            else:
                ast = _TranslateLiterals(self.catalog).visit(ast)
        if self.inliner is not None and name is not None and self.is_html(name):
            ast = self.inliner.transform(ast, name, self.is_html)
        if self.inline_includes:
            self._inlining.append(name)
            try:
                ast = _InlineIncludes(self, name).visit(ast)
            finally:
                self._inlining.pop()
        return ast

    def parse_included(self, name: str) -> nodes.Template | None:
        """Template `name` as `_parse` makes it (its own includes inlined) to compile it into
        another, or None if it is being inlined already: it includes itself."""
        if name in self._inlining or self.loader is None:
            return None
        source, filename, _ = self.loader.get_source(self, name)
        return self._parse(source, name, filename)

    @functools.cached_property
    def _inlining(self) -> list[str | None]:
        # The templates being parsed, the outermost first (a compile holds the Renderer's lock).
        return []

    @functools.cached_property
    def inlined(self) -> set[str]:
        """Templates compiled into another, whose own compiled form no email needs unless some
        template still `included` them (`_compile` skips them)."""
        return set()

    @functools.cached_property
    def included(self) -> set[str]:
        """Templates that some template still includes as Jinja does: loaded as it renders."""
        return set()

    def is_html(self, name: str | None) -> bool:
        """Whether template `name` is autoescaped, i.e. HTML."""
        autoescape = self.autoescape
        return bool(autoescape(name) if callable(autoescape) else autoescape)


class _InlineIncludes(NodeTransformer):
    """`{% include "name" %}` -> the body of template `name`, in a scope of its own.

    Jinja renders an include through a template lookup, a new Context (the includer's variables
    and locals copied into it) and a generator whose output the includer yields again piece by
    piece: the 21 includes of an order_cancelled email were a quarter of its render
    (benchmarks/render.py, 0.275 -> 0.206 ms per email). Compiled into the includer, the body
    reads the same variables (the includer's, its loop variables and macro arguments), and what
    it assigns stays in its scope, as it does in an included template. The same output: a test
    renders every template, language and scenario both ways.

    Kept as an include: a name that is not a literal string, `ignore missing`, `without
    context`, a template that extends another, has blocks or reads `loop`, `self` or a macro's
    own names where it does not define them (`_stands_alone`), one escaped otherwise than its
    includer (an HTML partial in a text part), and an include of itself. Not detected: a partial
    that reads a name its includer assigns only after the include (Jinja gives the partial the
    render context's value of that name, the inlined body an undefined one).

    A template error inside an inlined body would carry the includer's file name (with the
    partial's line), so `Renderer.render` renders a failed email again with includes as Jinja
    makes them: the error it raises names the file the template author wrote.
    """

    def __init__(self, env: EmailEnvironment, name: str | None) -> None:
        self._env = env
        self._html = env.is_html(name)

    def visit_Include(self, node: nodes.Include) -> nodes.Node:
        target = node.template
        name = target.value if isinstance(target, nodes.Const) else None
        if not isinstance(name, str):  # a name computed as it renders, or a list to choose from
            return node
        ast = None
        if node.with_context and not node.ignore_missing and self._env.is_html(name) == self._html:
            ast = self._env.parse_included(name)
        if ast is None or _stands_alone(ast):
            self._env.included.add(name)
            return node
        self._env.inlined.add(name)
        return nodes.Scope(ast.body, lineno=node.lineno)


# Names Jinja defines in a template's code only where that code uses them: an included template
# does not see its includer's (`loop` of the for around the include is undefined in it).
_OWN_NAMES: Final = frozenset({"self", "super", "loop", "caller", "varargs", "kwargs"})


def _stands_alone(ast: nodes.Template) -> bool:
    """Whether a template needs to be one of its own: it extends a layout, has blocks, or reads
    one of `_OWN_NAMES` outside the for or macro that defines it."""
    if any(True for _ in ast.find_all((nodes.Extends, nodes.Block))):
        return True
    return _reads_own_name(ast, frozenset())


def _reads_own_name(node: nodes.Node, bound: frozenset[str]) -> bool:
    if isinstance(node, nodes.Name):
        return node.ctx == "load" and node.name in _OWN_NAMES and node.name not in bound
    if isinstance(node, nodes.For | nodes.Macro):  # their bodies (not a for's else) define some
        names = {"loop"} if isinstance(node, nodes.For) else {"varargs", "kwargs", "caller"}
        body = {id(child) for child in node.body}
        return any(
            _reads_own_name(child, bound | names if id(child) in body else bound)
            for child in node.iter_child_nodes()
        )
    return any(_reads_own_name(child, bound) for child in node.iter_child_nodes())


def _binds_gettext_names(ast: nodes.Template) -> bool:
    names = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names.update(n.target for n in ast.find_all(nodes.Import))
    for imported in ast.find_all(nodes.FromImport):
        names.update(n if isinstance(n, str) else n[1] for n in imported.names)
    names.update(m.name for m in ast.find_all(nodes.Macro))
    return not names.isdisjoint(_GETTEXT_NAMES | {"ngettext"})


def _email_environment(
    loader: BaseLoader,
    catalog: gettext.NullTranslations | None = None,
    inliner: TemplateInliner | None = None,
    *,
    inline_includes: bool = False,
) -> Environment:
    env = i18n_environment(
        loader, escape_all=False, catalog=catalog, inliner=inliner, inline_includes=inline_includes
    )
    env.filters["wordwrap"] = fast_wordwrap
    env.globals["heading"] = _text_heading
    return env


def _compile(
    env: Environment, sources: list[str], names: list[str]
) -> dict[str, dict[str, Template]]:
    parts = {
        name: {part: env.get_template(f"email/{name}.{part}") for part in TEMPLATE_PARTS}
        for name in names
    }
    # Every layout and partial an email loads as it renders now, not inside the first emails
    # (profiled); not those compiled into every template that includes them (known once their
    # includers compiled: the layouts before the partials of email/partials/).
    for path in sorted(sources, key=lambda path: path.count("/")):
        if not (
            isinstance(env, EmailEnvironment) and path in env.inlined and path not in env.included
        ):
            env.get_template(path)
    return parts


class Renderer:
    """Compiled templates and catalogs, built once per process; `render` is pure CPU."""

    def __init__(
        self, settings: Settings, *, css_at_compile_time: bool = True, inline_includes: bool = True
    ) -> None:
        """Read and compile everything; `css_at_compile_time=False` keeps css-inline per message
        even where inlining at compile time would be proven right (tests compare the two);
        `inline_includes=False` renders includes as Jinja does (what a failed render is raised
        from, so that its traceback names the included file)."""
        self._settings = settings
        self._inline_includes = inline_includes
        self._as_written: Renderer | None = None  # includes as Jinja makes them, for errors
        self._search_path = template_search_path(settings)
        loader = FileSystemLoader(self._search_path)
        self._env = _email_environment(loader)
        self._locales = available_locales(self._search_path)
        self._translations = {
            name: load_translations(self._search_path, name) for name in self._locales
        }
        self._inliner = css_inliner()
        self._policy = merge_refund_policy(settings.refund_policy.items())
        self._names = self._discover_templates()
        self._sources = [
            path
            for path in self._env.list_templates(extensions=["html", "txt", "subject"])
            if path.startswith("email/")
        ]
        # The email templates as read now, so a language compiled later sees the same files.
        snapshot = {path: loader.get_source(self._env, path) for path in self._sources}
        self._loader = ChoiceLoader([FunctionLoader(snapshot.get), loader])
        self._lock = threading.Lock()
        inliner, reason = (
            self._template_inliner()
            if css_at_compile_time
            else (None, "compile-time inlining was turned off")
        )
        self._compile_english(inliner)
        problems = [] if inliner is None else inliner.check(self._names)
        if problems:  # a template it cannot prove right: the whole email inlines per message
            inliner, reason = None, "; ".join(problems)
            self._compile_english(None)
        self._css = CssInlining(at_compile_time=inliner is not None, reason=reason)
        log.info(
            "CSS inlined %s: %s",
            "once, as templates compile" if inliner is not None else "per message",
            reason,
        )

    def _template_inliner(self) -> tuple[TemplateInliner | None, str]:
        """The compile-time inliner for base.html's stylesheet (a shop's override counts), or
        None and why its styles might depend on more than each element itself."""
        try:
            source, _, _ = self._loader.get_source(self._env, BASE_TEMPLATE)
            styles = InlineStyles(read_stylesheet(source))
        except TemplateNotFound:
            return None, f"there is no {BASE_TEMPLATE}"
        except Unprovable as exc:
            return None, str(exc)
        return TemplateInliner(styles), "base.html's stylesheet styles each element by itself"

    def _compile_english(self, inliner: TemplateInliner | None) -> None:
        # One environment per language, its messages translated when it compiles (cProfile:
        # gettext calls were a third of Jinja's time per email). Compiling one costs ~0.13 s, so
        # only English is compiled now (template errors still stop the start) and each other
        # language on its first email, or all at once by `compile_all` (`serve`, `dev`).
        inline = self._inline_includes
        self._environments = {
            language: _email_environment(
                self._loader, self._translations[language], inliner, inline_includes=inline
            )
            for language in self._locales
        }
        english = self._environments[DEFAULT_LOCALE]
        self._templates = {DEFAULT_LOCALE: _compile(english, self._sources, self._names)}
        if isinstance(english, EmailEnvironment) and english.shadows_gettext:
            shared_env = _email_environment(self._loader, inliner=inliner, inline_includes=inline)
            shared = _compile(shared_env, self._sources, self._names)  # gettext from the context
            self._templates = dict.fromkeys(self._locales, shared)

    @property
    def css_inlining(self) -> CssInlining:
        """Whether CSS was inlined as the templates compiled, or is inlined per message."""
        return self._css

    def compile_all(self) -> None:
        """Compile every language now (a server at start-up: no first email pays ~0.1 s)."""
        for language in self._locales:
            self._parts(language)

    def warm_up(self) -> None:
        """Render the sample email once in every template and language (a server at start-up).

        The first email of a language loads Babel's locale data and fills the formatting
        caches: 45 ms for the first email of the process, 4-10 ms for each other language's
        first, 88 ms for all of them (measured). Paid here, not by the first customers of a
        storm, whose emails would queue behind it. A template that fails here (a shop's
        override) is logged and left to fail on its emails, as it would have: it does not keep
        the service from starting and storing webhooks.
        """
        event = CancellationEventV1.model_validate(sample_event())
        for language in self._locales:
            for name in self._names:
                try:
                    self.render(
                        event,
                        notification_id=_WARM_UP_ID,
                        reference="CX-0000-0000-0000",
                        template=name,
                        locale=language,
                    )
                except Exception:
                    log.warning(
                        "template fails to render the sample email at start-up",
                        extra={"template": name, "locale": language},
                        exc_info=True,
                    )

    def _parts(self, language: str) -> dict[str, dict[str, Template]]:
        parts = self._templates.get(language)
        if parts is None:
            with self._lock:  # render runs in threads; compile each language once
                parts = self._templates.get(language)
                if parts is None:
                    env = self._environments[language]
                    parts = _compile(env, self._sources, self._names)
                    self._templates[language] = parts
        return parts

    def _discover_templates(self) -> list[str]:
        names = {
            path.removeprefix("email/").removesuffix(".subject")
            for path in self._env.list_templates(extensions=["subject"])
            if path.startswith("email/") and "/" not in path.removeprefix("email/")
        }
        return sorted(names)

    def templates(self) -> list[str]:
        """Names of the emails that can be rendered, e.g. ["order_cancelled", ...]."""
        return list(self._names)

    def locales(self) -> list[str]:
        """Languages with a catalog (English first, it is the source language)."""
        return list(self._locales)

    def translations(self, language: str) -> gettext.NullTranslations:
        """The compiled catalog of one language (for previews and tests)."""
        return self._translations[language]

    @property
    def environment(self) -> Environment:
        """The Jinja2 environment (read-only use: sources, parsing, for preview checks)."""
        return self._env

    def template_context(
        self,
        event: CancellationEventV1,
        *,
        notification_id: uuid.UUID,
        reference: str,
        template: str = "order_cancelled",
        locale: str | None = None,
    ) -> dict[str, Any]:
        """The variables the HTML and text templates see, `subject` and `preheader` included.

        For previews ("the data used") and static checks; `render` stays the one path for mail.
        """
        again = functools.partial(
            Renderer.template_context,
            event=event,
            notification_id=notification_id,
            reference=reference,
            template=template,
            locale=locale,
        )
        with self._raised_as_written(again):  # the subject failed
            _, context = self._prepare(event, notification_id, reference, template, locale)
        return context

    def render(
        self,
        event: CancellationEventV1,
        *,
        notification_id: uuid.UUID,
        reference: str,
        template: str = "order_cancelled",
        locale: str | None = None,
    ) -> RenderedEmail:
        """Render `template` for `event` in the customer's language (or `locale` when given)."""
        again = functools.partial(
            Renderer.render,
            event=event,
            notification_id=notification_id,
            reference=reference,
            template=template,
            locale=locale,
        )
        with self._raised_as_written(again):
            parts, context = self._prepare(event, notification_id, reference, template, locale)
            html = parts["html"].render(context)
            text = finish_text(parts["txt"].render(context))
        if not self._css.at_compile_time:
            html = self._inliner.inline(html)
        return RenderedEmail(
            subject=context["subject"], html=html, text=text, locale=context["lang"]
        )

    @contextlib.contextmanager
    def _raised_as_written(self, again: Callable[[Renderer], object]) -> Iterator[None]:
        """A template error in the block is raised again from `again(renderer)` on `_written()`,
        where it names the file the template author wrote (an unknown template as it is)."""
        try:
            yield
        except UnknownTemplateError:
            raise
        except Exception:
            if self._inline_includes:
                again(self._written())
            raise

    def _written(self) -> Renderer:
        """This renderer's templates with every include rendered as Jinja does, made on the
        first failed render: an error inside an inlined include would show the includer's file
        name in its traceback, with the line in the included file. It reads the template files
        as they are then (a render that now succeeds re-raises the first error)."""
        with self._lock:
            if self._as_written is None:
                self._as_written = Renderer(
                    self._settings,
                    css_at_compile_time=self._css.at_compile_time,
                    inline_includes=False,
                )
            return self._as_written

    def _prepare(
        self,
        event: CancellationEventV1,
        notification_id: uuid.UUID,
        reference: str,
        template: str,
        locale: str | None,
    ) -> tuple[dict[str, Template], dict[str, Any]]:
        """The compiled parts of `template` in the negotiated language, and the context with
        its one-line `subject` and `preheader`."""
        tag = locale or event.customer.locale
        language = negotiate_locale(tag, self._locales)
        parts = self._parts(language).get(template)
        if parts is None:
            raise UnknownTemplateError(f"unknown template {template!r}")
        context = self._context(
            event,
            notification_id=notification_id,
            reference=reference,
            template=template,
            language=language,
            fmt=formatting_locale(tag, language),
        )
        context["subject"] = _one_line(parts["subject"].render(context))
        context["preheader"] = self._preheader(context)
        return parts, context

    # --- the view model ---------------------------------------------------------------------

    def _context(
        self,
        event: CancellationEventV1,
        *,
        notification_id: uuid.UUID,
        reference: str,
        template: str,
        language: str,
        fmt: Locale,
    ) -> dict[str, Any]:
        settings = self._settings
        translations = self._translations[language]
        _ = translations.gettext
        order = event.order
        reason = event.cancellation.reason
        sensitive = reason is Reason.fraud_suspected

        def money(amount: Decimal | None, currency: str) -> str | None:
            return None if amount is None else format_money(amount, currency, fmt)

        items = [
            ItemView(
                name=item.name,
                quantity=format_count(item.quantity, fmt),
                price=money(item.unit_price, order.currency),
                image_url=item.image_url,
                url=item.url,
            )
            for item in order.items[:MAX_ITEMS_SHOWN]
        ]
        alternatives = (
            []
            if sensitive
            else [
                ProductView(
                    name=alt.name,
                    url=click_url(settings, notification_id, "alternative", alt.url) or alt.url,
                    image_url=alt.image_url,
                    price=money(alt.price, order.currency),
                )
                for alt in event.alternatives[:MAX_ALTERNATIVES]
            ]
        )
        window_from = event.occurred_at if template == "refund_completed" else event.cancelled_at
        refund = self._refund_view(event.refund, window_from.date(), _, fmt)
        first_name = " ".join((event.customer.first_name or "").split()) or None
        phone = settings.support_phone
        return {
            "i18n": translations,
            "lang": language,
            "template": template,
            "shop_name": settings.shop_name,
            "shop_url": settings.shop_url,
            "shop_url_display": settings.shop_url.split("://", 1)[-1],
            "support_email": settings.support_email,
            "support_phone": phone,
            "support_phone_uri": None if phone is None else _PHONE_CHARS.sub("", phone),
            "first_name": first_name,
            "order_number": order.number or order.id,
            "order_date": None
            if order.placed_at is None
            else format_long_date(order.placed_at.date(), fmt),
            "cancelled_on": format_long_date(event.cancelled_at.date(), fmt),
            "items": items,
            "items_more": max(0, len(order.items) - MAX_ITEMS_SHOWN),
            "order_total": money(order.total, order.currency),
            "reason": reason.value,
            "reason_text": _(REASON_COPY[reason]),
            "note": event.cancellation.note or None,
            "refund": refund,
            "alternatives": alternatives,
            "reorder_url": None
            if sensitive
            else click_url(settings, notification_id, "reorder", event.reorder_url),
            "lead_with_alternatives": reason is Reason.out_of_stock and bool(alternatives),
            "reference": reference,
            "status_url": status_url(settings, notification_id),
            "shop_status_url": order.status_url,
            "feedback_yes_url": feedback_url(settings, notification_id, "yes"),
            "feedback_no_url": feedback_url(settings, notification_id, "no"),
            "open_pixel_url": open_pixel_url(settings, notification_id),
        }

    def _refund_view(
        self,
        refund: Refund | None,
        cancelled_on: date,
        _: Callable[[str], str],
        fmt: Locale,
    ) -> RefundView | None:
        if refund is None or refund.method is RefundMethod.none or refund.amount == 0:
            return None
        if refund.method is RefundMethod.card:
            label, phrase = _card_destination(refund, _)
        else:
            label = _(_DESTINATION_LABEL[refund.method])
            phrase = _(_DESTINATION_PHRASE.get(refund.method, _DESTINATION_LABEL[refund.method]))
        window = refund_window(cancelled_on, refund.method, self._policy)
        start = end = None
        if window is not None and window.end != cancelled_on:
            with_year = window.end.year != cancelled_on.year
            start = format_short_date(window.start, fmt, with_year=with_year)
            end = format_short_date(window.end, fmt, with_year=with_year)
        return RefundView(
            method=refund.method.value,
            amount=format_money(refund.amount, refund.currency, fmt),
            destination=phrase,
            destination_label=label,
            window_start=start,
            window_end=end,
        )

    def _preheader(self, context: Mapping[str, Any]) -> str:
        _ = context["i18n"].gettext
        refund: RefundView | None = context["refund"]
        if refund is None:
            return str(_("You were not charged for this order."))
        if refund.window_end is None:
            return _substitute(
                _("Your refund of %(amount)s is available right away."),
                {"amount": refund.amount},
                html=False,
            )
        return _substitute(
            _("Your refund of %(amount)s is on its way, expected by %(end)s."),
            {"amount": refund.amount, "end": refund.window_end},
            html=False,
        )


def _card_destination(refund: Refund, _: Callable[[str], str]) -> tuple[str, str]:
    brand = " ".join((refund.card_brand or "").split()) or None
    last4 = refund.card_last4
    if brand and last4:
        values = {"brand": brand, "last4": last4}
        return (
            _("%(brand)s ending in %(last4)s") % values,
            _("your %(brand)s card ending in %(last4)s") % values,
        )
    if last4:
        values = {"last4": last4}
        return (
            _("Card ending in %(last4)s") % values,
            _("your card ending in %(last4)s") % values,
        )
    if brand:
        return brand, _("your %(brand)s card") % {"brand": brand}
    return _("Card"), _("the card you paid with")
