"""CSS inlined into the HTML email templates once, as they compile, instead of into every message.

css-inline parsing and re-serialising each rendered email was the largest single cost of a
render (html5ever, not selector matching). When base.html's stylesheet is *context-free* (every
selector outside `@media` is a type, `*`, a class or a compound of those), the style css-inline
gives an element depends only on its tag name, `class` and `style`: so each static start tag of
the templates gets, when it compiles, the `style` attribute css-inline computes for that triple on
a tiny probe document (cached), and base.html's `<style>` block becomes what css-inline leaves of
it. Markup made at render time (a translation or a computed `Markup` with tags) is styled the
same way, with the same cache, by a filter the transform puts around expressions that land in
text. Anything that cannot be shown to give css-inline's result raises `Unprovable`, and the
renderer inlines per message as before.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Final, NamedTuple

import css_inline
from jinja2 import nodes
from jinja2.runtime import Macro
from markupsafe import Markup

log = logging.getLogger(__name__)

BASE_TEMPLATE: Final = "email/base.html"
STYLE_FILTER: Final = "_cancelnotify_style"
# Put on the one element of a probe document whose style is read back; no selector can see it
# (attribute selectors make a stylesheet context-dependent, so it never gets this far).
_MARKER: Final = "data-cancelnotify-probe"

# Elements whose content is text to the HTML parser, so no tag inside is styled.
_RAW_TEXT: Final = frozenset({"style", "xmp", "iframe", "noembed", "noframes", "title", "textarea"})
# Parsed in ways the tokenizer does not follow (foreign content, a template's inert fragment,
# noscript's scripting-dependent content, script's escapes, plaintext to the end, frames).
_UNSUPPORTED: Final = frozenset(
    {"svg", "math", "template", "noscript", "script", "plaintext", "frameset", "frame"}
)
_VOID: Final = frozenset(
    {
        "area", "base", "basefont", "bgsound", "br", "col", "embed", "hr", "image", "img",
        "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
    }
)  # fmt: skip
# Where a probe element must sit for the parser to keep it (a <td> outside a table is dropped).
_PROBE_CONTEXT: Final = {
    "td": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "th": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "tr": ("<table><tbody>", "</tbody></table>"),
    "tbody": ("<table>", "</table>"),
    "thead": ("<table>", "</table>"),
    "tfoot": ("<table>", "</table>"),
    "caption": ("<table>", "</table>"),
    "colgroup": ("<table>", "</table>"),
    "col": ("<table><colgroup>", "</colgroup></table>"),
}
# Elements the parser inserts without a tag in the source (so without a compile-time style).
_IMPLIED_ALWAYS: Final = ("tbody", "tr", "colgroup")
_IMPLIED_UNLESS_WRITTEN: Final = ("html", "head", "body")


class Unprovable(Exception):
    """Inlining at compile time cannot be shown to give what css-inline gives per message."""


def css_inliner() -> Any:
    """The css-inline settings of every email: rules into `style`, only at-rules stay in head."""
    return css_inline.CSSInliner(
        keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
    )


# --- the stylesheet ------------------------------------------------------------------------

_STYLE_START: Final = re.compile(r"<style(?=[\t\n\f\r />])", re.I)
_STYLE_BLOCK: Final = re.compile(r"<style>(.*?)</style[\t\n\f\r />]", re.I | re.S)
_LINK_STYLESHEET: Final = re.compile(r"<link\b[^>]*stylesheet", re.I)
_DOCTYPE: Final = re.compile(r"\s*(<!doctype\b[^>]*>)", re.I)
_CSS_TOKEN: Final = re.compile(
    r"""(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<comment>/\*.*?(?:\*/|\Z))
      | (?P<punct>[{};])
      | (?P<other>[^"'{};/]+|/|["'])""",
    re.S | re.X,
)
_COMPOUND: Final = re.compile(
    r"(?:\*|[a-zA-Z][a-zA-Z0-9-]*)?(?:\.-?[_a-zA-Z][_a-zA-Z0-9-]*)*", re.ASCII
)
_AT_NAME: Final = re.compile(r"@([-\w]+)")
# At-rules css-inline keeps in head, whatever their selectors (it never inlines from them).
_KEPT_AT_RULES: Final = frozenset({"media"})
# At-rules with declarations or keyframes inside, no rules that match elements.
_NO_ELEMENT_RULES: Final = frozenset(
    {"font-face", "page", "counter-style", "property", "font-feature-values", "keyframes"}
)
_STATEMENT_AT_RULES: Final = frozenset({"import", "charset", "layer"})
_NESTING_AT_RULES: Final = frozenset({"supports", "layer"})


@dataclass(frozen=True, slots=True)
class Stylesheet:
    """The CSS of base.html's `<style>` block and the doctype its documents start with."""

    css: str
    doctype: str  # probes parse in the same (no-)quirks mode as the email


def read_stylesheet(base_source: str) -> Stylesheet:
    """base.html's stylesheet, if every element's inlined style depends on that element alone.

    Raises `Unprovable` naming the first reason it does not: not exactly one plain `<style>`
    block, template syntax inside it, a linked stylesheet, or a context-dependent selector.
    """
    count = len(_STYLE_START.findall(base_source))
    if count != 1:
        raise Unprovable(f"base.html has {count} <style> blocks, not one")
    match = _STYLE_BLOCK.search(base_source)
    if match is None:
        raise Unprovable("base.html's <style> tag has attributes")
    css = match.group(1)
    if any(mark in css for mark in ("{{", "{%", "{#")):
        raise Unprovable("base.html's <style> block contains template syntax")
    if _LINK_STYLESHEET.search(base_source):
        raise Unprovable("base.html links a stylesheet")
    check_context_free(css)
    doctype = _DOCTYPE.match(base_source)
    return Stylesheet(css=css, doctype="" if doctype is None else doctype.group(1))


def check_context_free(css: str) -> None:
    """Raise `Unprovable` unless every rule css-inline may inline has a context-free selector.

    Context-free: a type selector, `*`, classes, or a compound of those (`td.box-cell`, `.a.b`),
    in comma lists; no combinators, pseudo-classes or attribute selectors, which make an
    element's style depend on its ancestors, siblings or other attributes.
    """
    tokens = [
        (kind, text)
        for kind, text in _css_tokens(css)
        if kind != "comment"  # a comment separates tokens but is not whitespace
    ]
    position = _check_rules(tokens, 0, nested=False)
    if position != len(tokens):
        raise Unprovable("the stylesheet has an unmatched '}'")


def _css_tokens(css: str) -> Iterable[tuple[str, str]]:
    for match in _CSS_TOKEN.finditer(css):
        kind = match.lastgroup or "other"
        yield kind, match.group()


def _check_rules(tokens: list[tuple[str, str]], position: int, *, nested: bool) -> int:
    """Check the rules from `position` to the end (or the `}` closing a block if `nested`)."""
    prelude: list[str] = []
    while position < len(tokens):
        kind, text = tokens[position]
        position += 1
        if kind != "punct":
            prelude.append(text)
            continue
        head = "".join(prelude).strip()
        prelude = []
        if text == "}":  # closes the block (nested) or is reported by the caller
            if head:
                raise Unprovable(f"the stylesheet has a stray {head!r}")
            return position - 1
        if text == ";":
            if head and not _statement_allowed(head):
                raise Unprovable(f"the stylesheet has an unexpected {head!r}")
            continue
        position = _check_block(tokens, position, head)
    if nested:
        raise Unprovable("the stylesheet has an unclosed '{'")
    return position


def _statement_allowed(head: str) -> bool:
    match = _AT_NAME.match(head)
    return match is not None and match.group(1).lower() in _STATEMENT_AT_RULES


def _check_block(tokens: list[tuple[str, str]], position: int, head: str) -> int:
    """Check the block after `head {` and return the position after its `}`."""
    if head.startswith("@"):
        match = _AT_NAME.match(head)
        name = "" if match is None else match.group(1).lower()
        bare = re.sub(r"^-[a-z]+-", "", name)  # @-webkit-keyframes
        if name in _KEPT_AT_RULES or bare in _NO_ELEMENT_RULES:
            return _skip_block(tokens, position)
        if name in _NESTING_AT_RULES:
            end = _check_rules(tokens, position, nested=True)
            return end + 1
        raise Unprovable(f"the stylesheet has an @{name} rule")
    for selector in head.split(","):
        selector = selector.strip()
        if not selector or _COMPOUND.fullmatch(selector) is None:
            raise Unprovable(
                f"selector {selector!r} is not context-free (only type, * and class selectors "
                "and their compounds: no combinators, pseudo-classes or attribute selectors)"
            )
    end = _skip_block(tokens, position, declarations=True)
    return end


def _skip_block(tokens: list[tuple[str, str]], position: int, *, declarations: bool = False) -> int:
    depth = 1
    while position < len(tokens):
        kind, text = tokens[position]
        position += 1
        if kind != "punct":
            continue
        if text == "{":
            if declarations:
                raise Unprovable("the stylesheet nests rules inside a rule")
            depth += 1
        elif text == "}":
            depth -= 1
            if depth == 0:
                return position
    raise Unprovable("the stylesheet has an unclosed '{'")


# --- the HTML tokenizer --------------------------------------------------------------------

_GAP: Final = re.compile(r"[\t\n\f\r /]*")  # a '/' not right before '>' is ignored
_TAG_NAME: Final = re.compile(r"[^\t\n\f\r />]*")
_ATTR_NAME: Final = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_EQUALS: Final = re.compile(r"[\t\n\f\r ]*=[\t\n\f\r ]*")
_UNQUOTED: Final = re.compile(r"[^\t\n\f\r >]*")
_COMMENT_END: Final = re.compile(r"--!?>")
_GT: Final = re.compile(">")
_RAW_TAIL: Final = re.compile(r"</?[a-zA-Z]*\Z")


class AttrValue(NamedTuple):
    """An attribute value as written: the quote ('"', "'" or "" unquoted) and the raw text.

    Character references stay undecoded: a probe document quotes the value the same way, so
    the parser decodes it the same way.
    """

    quote: str
    raw: str


@dataclass(slots=True)
class _Attribute:
    value: AttrValue | None  # None: an expression is part of it
    piece: int
    start: int
    end: int


@dataclass(slots=True)
class _Tag:
    name: str
    piece: int
    start: int  # where its '<' is
    end_tag: bool = False
    attributes: dict[str, _Attribute] = field(default_factory=dict)
    # An attribute whose quoted value is cut by an expression: name, quote, piece, start.
    open_value: tuple[str, str, int, int] | None = None

    def add(self, name: str, attribute: _Attribute) -> None:
        self.attributes.setdefault(name, attribute)  # the parser keeps the first of duplicates


class _Mode(enum.Enum):
    TEXT = enum.auto()
    TAG = enum.auto()
    RAW = enum.auto()
    COMMENT = enum.auto()


class _Tokenizer:
    """The HTML tokenizer's states that matter here, over static text cut by expressions.

    `feed` takes one piece of static text, `expression` marks where an expression's output goes
    (raising `Unprovable` if that is inside a tag but outside a quoted attribute value),
    `finish` checks that the markup is back in text. Subclasses act on each complete tag.
    """

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self._mode = _Mode.TEXT
        self._tag = _Tag("", 0, 0)  # the tag being read (TAG) or whose raw text (RAW)
        self._terminator = _GT
        self._raw_end = _GT
        self._open: str | None = None  # markup cut by the end of a piece (cannot continue)

    # -- driving ---------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        index = len(self.pieces)
        self.pieces.append(text)
        if self._open is not None:
            raise Unprovable(f"{self._open} is cut by template syntax")
        position, end = 0, len(text)
        while position < end:
            if self._mode is _Mode.TEXT:
                lt = text.find("<", position)
                if lt < 0:
                    return
                position = self._markup(text, index, lt)
            elif self._mode is _Mode.TAG:
                position = self._in_tag(text, index, position)
            elif self._mode is _Mode.RAW:
                position = self._in_raw(text, index, position)
            else:
                position = self._in_comment(text, position)
        if self._mode is _Mode.TAG and self._tag.open_value is None:
            self._open = f"<{self._tag.name}>"

    def expression(self) -> bool:
        """An expression's output goes here: True if into text (where it may bring tags)."""
        if self._open is not None:
            raise Unprovable(f"template syntax right after {self._open}")
        if self._mode is _Mode.TEXT:
            return True
        if self._mode is _Mode.TAG:
            tag = self._tag
            name = "" if tag.open_value is None else tag.open_value[0]  # else `_open` is set
            if name in ("class", "style") and not tag.end_tag:
                raise Unprovable(
                    f"<{tag.name}> has a {name} attribute built by an expression: put "
                    "{% if %} around whole start tags instead"
                )
        return False

    def finish(self) -> None:
        if self._open is not None:
            raise Unprovable(f"{self._open} is left open where the output ends")
        if self._mode is not _Mode.TEXT:
            what = "a comment" if self._mode is _Mode.COMMENT else f"<{self._tag.name}>"
            raise Unprovable(
                f"{what} is left open where the output ends (template syntax inside a tag? "
                "put {% if %} around whole start tags)"
            )

    # -- states ----------------------------------------------------------------------------

    def _markup(self, text: str, index: int, lt: int) -> int:
        """After a '<' in text: a tag, a comment, a doctype, or just text."""
        rest = text[lt + 1 : lt + 4]
        if not rest:
            self._open = "'<'"
            return len(text)
        first = rest[0]
        if first.isascii() and first.isalpha():
            name = _match(_TAG_NAME, text, lt + 1)
            self._tag = _Tag(name.lower(), index, lt)
            self._mode = _Mode.TAG
            return lt + 1 + len(name)
        if first == "/":
            if len(rest) < 2:
                self._open = "'</'"
                return len(text)
            if rest[1].isascii() and rest[1].isalpha():
                name = _match(_TAG_NAME, text, lt + 2)
                self._tag = _Tag(name.lower(), index, lt, end_tag=True)
                self._mode = _Mode.TAG
                return lt + 2 + len(name)
            if rest[1] == ">":
                return lt + 3  # '</>' is dropped
            return self._comment(lt + 2, _GT)
        if first == "!":
            if text.startswith("<!--", lt):
                after = lt + 4
                if text.startswith(">", after):
                    return after + 1
                if text.startswith("->", after):
                    return after + 2
                return self._comment(after, _COMMENT_END)
            if "<!--".startswith(text[lt:]):
                self._open = "'<!'"
                return len(text)
            return self._comment(lt + 2, _GT)  # a doctype, CDATA or other bogus comment
        if first == "?":
            return self._comment(lt + 2, _GT)
        return lt + 1

    def _comment(self, position: int, terminator: re.Pattern[str]) -> int:
        self._mode = _Mode.COMMENT
        self._terminator = terminator
        return position

    def _in_comment(self, text: str, position: int) -> int:
        match = self._terminator.search(text, position)
        if match is None:
            if self._terminator is _COMMENT_END and text.endswith(("-", "--!")):
                self._open = "the end of a comment"
            return len(text)
        self._mode = _Mode.TEXT
        return match.end()

    def _in_raw(self, text: str, index: int, position: int) -> int:
        match = self._raw_end.search(text, position)
        if match is None:
            if _RAW_TAIL.search(text, position):
                self._open = f"the end of <{self._tag.name}>"
            return len(text)
        self.raw_text(index, text, position, match.start())
        self._tag = _Tag(self._tag.name, index, match.start(), end_tag=True)
        self._mode = _Mode.TAG
        return match.end()

    def _in_tag(self, text: str, index: int, position: int) -> int:
        tag = self._tag
        length = len(text)
        if tag.open_value is not None:  # resume after an expression inside a quoted value
            name, quote, piece, start = tag.open_value
            close = text.find(quote, position)
            if close < 0:
                return length
            tag.add(name, _Attribute(None, piece, start, close + 1))
            tag.open_value = None
            position = close + 1
        while True:
            gap = position
            position += len(_match(_GAP, text, position))
            if position == length:
                self._open = f"<{tag.name}>"
                return length
            if text[position] == ">":
                self_closing = position > gap and text[position - 1] == "/"
                self._mode = _Mode.TEXT
                self._close_tag(tag, index, position, self_closing)
                return position + 1
            start = position
            attribute = _match(_ATTR_NAME, text, position)
            position += len(attribute)
            attribute = attribute.lower()
            equals = _EQUALS.match(text, position)
            if position == length or (equals is not None and equals.end() == length):
                self._open = f"<{tag.name}>"
                return length
            if equals is None:
                tag.add(attribute, _Attribute(AttrValue('"', ""), index, start, position))
                continue
            position = equals.end()
            quote = text[position]
            if quote in "\"'":
                close = text.find(quote, position + 1)
                if close < 0:
                    tag.open_value = (attribute, quote, index, start)
                    return length
                value = AttrValue(quote, text[position + 1 : close])
                position = close + 1
            else:
                unquoted = _match(_UNQUOTED, text, position)
                position += len(unquoted)
                if position == length:
                    self._open = f"<{tag.name}>"
                    return length
                value = AttrValue("", unquoted)
            tag.add(attribute, _Attribute(value, index, start, position))

    def _close_tag(self, tag: _Tag, index: int, gt: int, self_closing: bool) -> None:
        if tag.end_tag:
            if tag.name == "br":
                raise Unprovable("</br> (the HTML parser turns it into a <br> element)")
            self.end_tag(tag, index, gt)
            return
        if tag.name in _UNSUPPORTED:
            raise Unprovable(f"<{tag.name}> is not supported by compile-time inlining")
        self.start_tag(tag, index, gt, self_closing)
        if tag.name in _RAW_TEXT:
            self._mode = _Mode.RAW
            self._raw_end = re.compile(rf"</{re.escape(tag.name)}(?=[\t\n\f\r />])", re.I)

    # -- hooks -----------------------------------------------------------------------------

    def start_tag(self, tag: _Tag, index: int, gt: int, self_closing: bool) -> None:
        """A complete start tag; its '>' is at `gt` of piece `index`."""

    def end_tag(self, tag: _Tag, index: int, gt: int) -> None:
        """A complete end tag."""

    def raw_text(self, index: int, text: str, start: int, end: int) -> None:
        """The content of a raw-text element (all within piece `index`)."""


def _match(pattern: re.Pattern[str], text: str, position: int) -> str:
    # The patterns it is used with match the empty string or, where used, one character.
    match = pattern.match(text, position)
    return "" if match is None else match.group()


class _TagCollector(_Tokenizer):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[_Tag, int]] = []

    def start_tag(self, tag: _Tag, index: int, gt: int, self_closing: bool) -> None:
        self.tags.append((tag, gt))


def _start_tags(html: str) -> list[tuple[_Tag, int]]:
    collector = _TagCollector()
    collector.feed(html)
    collector.finish()
    return collector.tags


# --- styles, computed by css-inline --------------------------------------------------------

_StyleKey = tuple[str, AttrValue | None, AttrValue | None]


def _attribute_source(name: str, value: AttrValue | None) -> str:
    if value is None:
        return ""
    quote = value.quote
    if not quote:  # unquoted in the source; any quoting decodes the same
        quote = "'" if '"' in value.raw else '"'
        if quote in value.raw:
            raise Unprovable(f"cannot quote the {name} attribute {value.raw!r}")
    return f" {name}={quote}{value.raw}{quote}"


class InlineStyles:
    """The style css-inline gives (tag, class, style), computed on a probe document, cached.

    Shared by every language's templates and by the render-time filter; safe across threads
    (a race computes one entry twice, with the same result). Its entries are the distinct tags of
    the templates and of markup made at render time (catalogs, code), never customer data, which
    is escaped text.
    """

    def __init__(self, sheet: Stylesheet) -> None:
        self._sheet = sheet
        self._inliner = css_inliner()
        self._computed: dict[_StyleKey, AttrValue | None] = {}
        # Styles css-inline wrote: a tag that has one was styled already (a macro's output
        # going through the filter again), and css-inline would only reformat it.
        self._written: set[_StyleKey] = set()
        self.head = self._head_block()

    def style(self, tag: str, cls: AttrValue | None, style: AttrValue | None) -> AttrValue | None:
        """The `style` css-inline leaves on <tag class=cls style=style> (None: no attribute)."""
        key = (tag, cls, style)
        try:
            return self._computed[key]
        except KeyError:
            pass
        result = self._probe(tag, cls, style)
        self._computed[key] = result
        if result is not None:
            self._written.add((tag, cls, result))
        return result

    @property
    def css(self) -> str:
        """The stylesheet the styles come from."""
        return self._sheet.css

    def is_styled(self, tag: str, cls: AttrValue | None, style: AttrValue | None) -> bool:
        """Whether `style` is what this cache wrote for (tag, cls, ...) before."""
        return style is not None and (tag, cls, style) in self._written

    def _document(self, body: str, html: str = "", head: str = "", body_attrs: str = "") -> str:
        sheet = self._sheet
        return (
            f"{sheet.doctype}<html{html}><head{head}><style>{sheet.css}</style></head>"
            f"<body{body_attrs}>{body}</body></html>"
        )

    def _probe(self, tag: str, cls: AttrValue | None, style: AttrValue | None) -> AttrValue | None:
        attrs = f" {_MARKER}" + _attribute_source("class", cls) + _attribute_source("style", style)
        if tag == "html":
            document = self._document("", html=attrs)
        elif tag == "head":
            document = self._document("", head=attrs)
        elif tag == "body":
            document = self._document("", body_attrs=attrs)
        else:
            before, after = _PROBE_CONTEXT.get(tag, ("", ""))
            element = f"<{tag}{attrs}>" + ("" if tag in _VOID else f"</{tag}>")
            document = self._document(before + element + after)
        try:
            output = self._inliner.inline(document)
        except css_inline.InlineError as exc:
            raise Unprovable(f"css-inline fails on <{tag}{attrs}>: {exc}") from exc
        found = [t for t, _ in _start_tags(output) if _MARKER in t.attributes]
        if len(found) != 1:
            raise Unprovable(f"<{tag}> does not survive in a probe document")
        result = found[0].attributes.get("style")
        if result is None:
            return None
        if result.value is None or result.value.quote != '"':
            raise Unprovable(f"unexpected style attribute from css-inline for <{tag}>")
        return result.value

    def _head_block(self) -> str:
        """What css-inline puts at the start of <head> instead of the `<style>` block."""
        output = self._inliner.inline(self._document(""))
        heads = [gt for t, gt in _start_tags(output) if t.name == "head"]
        if len(heads) != 1:
            raise Unprovable("css-inline's output has no <head>")
        start = heads[0] + 1
        end = output.find("</head>", start)
        block: str = output[start:end]
        expected = not block or (block.startswith("<style") and block.endswith("</style>"))
        if end < 0 or not expected:
            raise Unprovable(f"css-inline puts {block[:40]!r} into <head>")
        return block


# --- styling static and render-time markup -------------------------------------------------


class _Styler(_Tokenizer):
    """Collects the edits that give each complete start tag css-inline's style attribute."""

    def __init__(self, styles: InlineStyles, *, render_time: bool, owns_stylesheet: bool) -> None:
        super().__init__()
        self._styles = styles
        self._render_time = render_time
        self._owns_stylesheet = owns_stylesheet  # base.html's top-level markup
        self._edits: list[list[tuple[int, int, str]]] = []
        self._deleting: tuple[int, int] | None = None
        self.stylesheets = 0  # base.html's <style> blocks replaced
        self.written: list[str] = []  # html, head, body start tags of base.html

    def feed(self, text: str) -> None:
        self._edits.append([])
        super().feed(text)

    def expression(self) -> bool:
        if self._deleting is not None:
            raise Unprovable("base.html's <style> block contains template syntax")
        return super().expression()

    def result(self) -> list[str]:
        """The pieces with their edits applied."""
        out = []
        for text, edits in zip(self.pieces, self._edits, strict=True):
            for start, end, replacement in sorted(edits, reverse=True):
                text = text[:start] + replacement + text[end:]
            out.append(text)
        return out

    def start_tag(self, tag: _Tag, index: int, gt: int, self_closing: bool) -> None:
        name = tag.name
        if name == "link":
            rel = tag.attributes.get("rel")
            if rel is not None and (rel.value is None or "stylesheet" in rel.value.raw.lower()):
                raise Unprovable("a <link> to a stylesheet (css-inline removes it)")
        if name == "style":
            if not self._owns_stylesheet or self._deleting is not None:
                raise Unprovable("a <style> block other than the one at base.html's top level")
            self._deleting = (index, tag.start)  # replaced by the head block, see below
            return
        cls, style = tag.attributes.get("class"), tag.attributes.get("style")
        cls_value = None if cls is None else cls.value
        style_value = None if style is None else style.value
        if (cls is not None and cls_value is None) or (style is not None and style_value is None):
            raise Unprovable(f"<{name}> has a class or style attribute built by an expression")
        if not (self._render_time and self._styles.is_styled(name, cls_value, style_value)):
            new = self._styles.style(name, cls_value, style_value)
            if new != style_value:
                self._set_style(index, gt - 1 if self_closing else gt, style, new)
        if self._owns_stylesheet and name in _IMPLIED_UNLESS_WRITTEN:
            self.written.append(name)
            if name == "head":  # css-inline puts the at-rules first in <head>
                self._edits[index].append((gt + 1, gt + 1, self._styles.head))

    def _set_style(
        self, index: int, at: int, style: _Attribute | None, new: AttrValue | None
    ) -> None:
        if style is None:
            if new is not None:
                self._edits[index].append((at, at, f' style="{new.raw}"'))
        elif new is None:
            self._edits[style.piece].append((style.start, style.end, ""))
        else:
            self._edits[style.piece].append((style.start, style.end, f'style="{new.raw}"'))

    def raw_text(self, index: int, text: str, start: int, end: int) -> None:
        if self._deleting is not None and text[start:end] != self._styles.css:
            raise Unprovable("base.html's <style> block is not the stylesheet read at start-up")

    def end_tag(self, tag: _Tag, index: int, gt: int) -> None:
        if self._deleting is None or tag.name != "style":
            return
        piece, start = self._deleting
        if piece != index:
            raise Unprovable("base.html's <style> block is cut by template syntax")
        self._edits[index].append((start, gt + 1, ""))
        self._deleting = None
        self.stylesheets += 1


@dataclass(slots=True)
class _Compiled:
    """What the transform learnt about one template."""

    problem: str | None = None
    extends: str | None = None
    stylesheets: int = 0
    written: list[str] = field(default_factory=list)


class TemplateInliner:
    """The compile-time transform of HTML templates and the render-time filter for markup.

    `transform` runs in an environment's `_parse`, as `_TranslateLiterals` does, for every
    language. What it cannot prove right for a template is kept per template and reported by
    `check` after the first language compiled; the renderer then inlines per message instead.
    """

    def __init__(self, styles: InlineStyles) -> None:
        self.styles = styles
        self.checked = False
        self._templates: dict[str, _Compiled] = {}
        self._warned: set[str] = set()
        # Markup made at render time repeats from email to email (a translated sentence around
        # a link built from settings): styled once per distinct string, not parsed per email
        # (27 us for the help sentence, 0.5 from the cache).
        self._styled = functools.lru_cache(maxsize=1024)(self._style)

    # -- compile time ----------------------------------------------------------------------

    def transform(
        self, ast: nodes.Template, name: str, is_html: Callable[[str], bool]
    ) -> nodes.Template:
        """Style `ast`'s static start tags; wrap expressions that output into text."""
        compiled = _Compiled(extends=_extends(ast))
        found = list(ast.find_all(_FOUND))  # one walk: it was half the transform's time
        try:
            _check_nodes(ast, found, is_html)
            top_level = {id(node) for node in ast.body}
            for output in found:
                if isinstance(output, nodes.Output):
                    owns = name == BASE_TEMPLATE and id(output) in top_level
                    self._rewrite(output, compiled, owns_stylesheet=owns)
        except Unprovable as exc:
            compiled.problem = f"{name}: {exc}"
            if self.checked:  # the same sources in another language: cannot differ
                raise RuntimeError(f"compile-time CSS inlining broke: {compiled.problem}") from exc
        self._templates[name] = compiled
        return ast

    def _rewrite(self, output: nodes.Output, compiled: _Compiled, *, owns_stylesheet: bool) -> None:
        styler = _Styler(self.styles, render_time=False, owns_stylesheet=owns_stylesheet)
        children: list[nodes.Expr | int] = []
        for child in _merge_data(output.nodes):
            if isinstance(child, nodes.TemplateData):
                children.append(len(styler.pieces))
                styler.feed(child.data)
            elif styler.expression():
                children.append(_style_filter(child))
            else:
                children.append(child)
        styler.finish()
        texts = styler.result()
        output.nodes = [
            nodes.TemplateData(texts[c], lineno=output.lineno) if isinstance(c, int) else c
            for c in children
        ]
        compiled.stylesheets += styler.stylesheets
        compiled.written += styler.written

    def check(self, emails: Iterable[str]) -> list[str]:
        """Why the compiled templates, as a whole, may not give css-inline's result (or nothing).

        Called once every template compiled in one language: a layout's tags, the <style>
        block and the `extends` chains are only known for all templates together.
        """
        self.checked = True
        templates = self._templates.values()
        problems = [t.problem for t in templates if t.problem is not None]
        if sum(t.stylesheets for t in templates) != 1:
            problems.append("base.html's <style> block is not at its top level")
        written = [tag for t in templates for tag in t.written]
        for tag in _IMPLIED_UNLESS_WRITTEN:
            if written.count(tag) > 1:
                problems.append(f"base.html has more than one <{tag}> tag")
        if self.styles.head and "head" not in written:
            problems.append("base.html has no <head> tag at its top level")
        try:
            for tag in _IMPLIED_UNLESS_WRITTEN:
                if tag not in written and self.styles.style(tag, None, None) is not None:
                    problems.append(f"the stylesheet styles <{tag}>, not written in base.html")
            for tag in _IMPLIED_ALWAYS:
                if self.styles.style(tag, None, None) is not None:
                    problems.append(f"the stylesheet styles <{tag}>, which the HTML parser adds")
        except Unprovable as exc:
            problems.append(str(exc))
        problems += [
            f"{name} does not extend {BASE_TEMPLATE}"
            for name in (f"email/{email}.html" for email in emails)
            if not self._extends_base(name)
        ]
        return problems

    def _extends_base(self, name: str) -> bool:
        seen: set[str] = set()
        while name != BASE_TEMPLATE:
            compiled = self._templates.get(name)
            if compiled is None or compiled.extends is None or name in seen:
                return False
            seen.add(name)
            name = compiled.extends
        return True

    # -- render time -----------------------------------------------------------------------

    def style_markup(self, value: Any, callee: Any = None) -> Any:
        """The filter around expressions that output into text: style a `Markup` value's tags.

        Plain strings are escaped after this (no tags) and pass at once, so does the output of
        a macro (`callee`), styled when its template compiled; other markup the templates made
        (a `{% set %}` block) is styled already and comes back equal.
        """
        if not isinstance(value, Markup) or "<" not in value or isinstance(callee, Macro):
            return value
        return self._styled(value)

    def _style(self, value: Markup) -> Markup:
        styler = _Styler(self.styles, render_time=True, owns_stylesheet=False)
        try:
            styler.feed(str(value))
            styler.finish()
        except Unprovable as exc:
            self._warn_once(str(exc))
            return value
        return Markup(styler.result()[0])  # noqa: S704 - the same markup with styles added

    def _warn_once(self, problem: str) -> None:
        if problem not in self._warned:
            self._warned.add(problem)
            log.warning(
                "markup made at render time is not styled as css-inline would style it: %s",
                problem,
            )


def _style_filter(child: nodes.Expr) -> nodes.Filter:
    """`child|_cancelnotify_style`, given the callee too if `child` calls something by name.

    A macro's output is styled already (its template compiled with this transform); passing the
    callee lets the filter skip it without reading the markup again (most of the markup made at
    render time, and three times the cost of css-inline when re-read, measured).
    """
    callee = _lookup(child.node) if isinstance(child, nodes.Call) else None
    args = [] if callee is None else [callee]
    return nodes.Filter(child, STYLE_FILTER, args, [], None, None, lineno=child.lineno)


def _lookup(node: nodes.Expr) -> nodes.Expr | None:
    """A copy of `node` if it is a name or attribute lookup (no side effect to evaluate twice)."""
    if isinstance(node, nodes.Name):
        return nodes.Name(node.name, "load", lineno=node.lineno)
    if isinstance(node, nodes.Getattr):
        inner = _lookup(node.node)
        return (
            None if inner is None else nodes.Getattr(inner, node.attr, "load", lineno=node.lineno)
        )
    return None


def _merge_data(children: list[nodes.Expr]) -> list[nodes.Expr]:
    """Adjacent template data as one piece ({% raw %} makes a piece of its own)."""
    merged: list[nodes.Expr] = []
    for child in children:
        previous = merged[-1] if merged else None
        if isinstance(child, nodes.TemplateData) and isinstance(previous, nodes.TemplateData):
            merged[-1] = nodes.TemplateData(previous.data + child.data, lineno=previous.lineno)
        else:
            merged.append(child)
    return merged


# The nodes the transform rewrites or checks.
_FOUND: Final = (
    nodes.Output,
    nodes.FilterBlock,
    nodes.EvalContextModifier,
    nodes.AssignBlock,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
)


def _check_nodes(
    ast: nodes.Template, found: Sequence[nodes.Node], is_html: Callable[[str], bool]
) -> None:
    """Raise for template constructs that change or bring in markup behind the transform."""
    top_level = {id(node) for node in ast.body}
    extends = 0
    for node in found:
        if isinstance(node, nodes.FilterBlock | nodes.EvalContextModifier):
            kind = "a {% filter %} block" if isinstance(node, nodes.FilterBlock) else "autoescape"
            raise Unprovable(f"{kind} changes markup after it is styled")
        if isinstance(node, nodes.AssignBlock) and node.filter is not None:
            raise Unprovable("a filtered {% set %} block changes markup after it is styled")
        if isinstance(node, nodes.Include | nodes.Import | nodes.FromImport):
            for target in _template_names(node.template):
                if target is None:
                    raise Unprovable("a template name computed at render time")
                if not is_html(target):
                    raise Unprovable(f"{target} is used by an HTML template but is not HTML")
        if isinstance(node, nodes.Extends):
            extends += 1
            if extends > 1 or id(node) not in top_level:
                raise Unprovable("a conditional or repeated {% extends %}")


def _template_names(template: nodes.Expr) -> list[str | None]:
    if isinstance(template, nodes.Const) and isinstance(template.value, str):
        return [template.value]
    if isinstance(template, nodes.List | nodes.Tuple):
        return [n.value if isinstance(n, nodes.Const) else None for n in template.items]
    return [None]


def _extends(ast: nodes.Template) -> str | None:
    """The template `ast` extends at its top level, with no output before (else None)."""
    for node in ast.body:
        if isinstance(node, nodes.Extends):
            names = _template_names(node.template)
            return names[0] if len(names) == 1 else None
        if isinstance(node, nodes.Output) and any(
            not isinstance(child, nodes.TemplateData) or child.data.strip() for child in node.nodes
        ):
            return None
    return None


# --- comparing documents -------------------------------------------------------------------


class _Events(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[str, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pairs = sorted(f"{k}={v!r}" for k, v in attrs)
        self.events.append(("start", tag, *pairs))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        self.events.append(("text", data))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self.events.append(("decl", decl))


def canonical_document(html: str) -> list[tuple[str, ...]]:
    """`html` as the HTML parser builds it: elements, attributes (sorted), text, in order.

    html5ever (through css-inline, inlining nothing) builds and re-serialises the tree, adding
    what a browser adds (tbody, head, body) and writing character references one way; the stdlib
    parser then lists it, so two documents that parse to the same tree compare equal whatever
    their attribute order or entity spelling.
    """
    parser = css_inline.CSSInliner(
        inline_style_tags=False, keep_style_tags=True, load_remote_stylesheets=False
    )
    events = _Events()
    events.feed(parser.inline(html))
    events.close()
    return events.events


def document_difference(actual: str, expected: str) -> str | None:
    """None if both parse to the same document, else where they first differ."""
    a, b = canonical_document(actual), canonical_document(expected)
    if a == b:
        return None
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return f"event {at}: {a[at : at + 1]} != {b[at : at + 1]} (after {a[max(0, at - 2) : at]})"
