"""Lint checks for a rendered email: pure functions that return `Warning(check, message, where)`.

Each check reads only what it is given (strings, a parsed template, a catalog) and never raises for
bad input: a problem in the email is a warning, not an error. HTML is read with the stdlib
`html.parser`; line numbers in `where` point into the rendered (CSS-inlined) HTML part, or into a
template file for the template checks.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from jinja2 import Environment, TemplateNotFound, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.ext import extract_from_ast

# Gmail clips a message body beyond 102 KB ("[Message clipped] View entire message").
GMAIL_CLIP_BYTES: Final = 102 * 1024
# Mobile inboxes show roughly the first 35-60 characters of a subject; past 60 it is cut.
SUBJECT_MAX_CHARS: Final = 60
GETTEXT_FUNCTIONS: Final = ("_", "gettext", "ngettext")

CHECKS: Final[Mapping[str, str]] = {
    "undefined-variable": "a template uses a variable the renderer does not provide",
    "html-size": f"the HTML part is over {GMAIL_CLIP_BYTES // 1024} KB and Gmail clips it",
    "insecure-link": "a link or image is relative, not HTTPS, or uses an unsafe scheme",
    "image-alt": "an image has no alt attribute",
    "text-missing-link": "the HTML part links somewhere the text part does not mention",
    "untranslated": "a string used by the template has no translation in this locale",
    "subject-length": f"the subject is over {SUBJECT_MAX_CHARS} characters and is cut on mobile",
    "css-per-message": "the CSS cannot be inlined as the templates compile; css-inline runs on "
    "every email (same result, slower)",
}

_PLACEHOLDER: Final = re.compile(r"%\([a-z_]+\)[sd]")
_WORD: Final = re.compile(r"[^\W\d_]{2,}")
_URL_END: Final = r"""(?=[\s)>\]"'.,;:!?]|$)"""
_SAFE_SCHEMES: Final = frozenset({"https", "mailto", "tel", "sms"})


@dataclass(frozen=True, slots=True)
class Warning:  # the name the preview speaks (shadows the builtin here); never raised
    """One finding: which check, what is wrong, and where it comes from."""

    check: str
    message: str
    where: str


# --- HTML ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tag:
    name: str
    attrs: dict[str, str | None]
    line: int


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[_Tag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(_Tag(tag, dict(attrs), self.getpos()[0]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


@functools.lru_cache(maxsize=4)
def _parse(html: str) -> tuple[_Tag, ...]:
    # Three checks read the same HTML part; parse it once.
    collector = _TagCollector()
    collector.feed(html)
    collector.close()
    return tuple(collector.tags)


def _tags(html: str, *names: str) -> Iterator[_Tag]:
    return (tag for tag in _parse(html) if tag.name in names)


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_html_size(html: str, limit: int = GMAIL_CLIP_BYTES) -> list[Warning]:
    size = len(html.encode("utf-8"))
    if size <= limit:
        return []
    return [
        Warning(
            "html-size",
            f"The HTML part is {size:,} bytes; Gmail clips messages over {limit:,} bytes",
            "HTML part",
        )
    ]


def check_links(html: str) -> list[Warning]:
    """Relative, plain-HTTP and unsafe-scheme links and image sources.

    HTTP links to loopback hosts are allowed: they are what `cancelnotify dev` puts in the
    status and feedback links, and cannot be HTTPS there.
    """
    found: list[Warning] = []
    for tag in _tags(html, "a", "area", "img"):
        attr = "src" if tag.name == "img" else "href"
        if attr not in tag.attrs:
            continue
        url = (tag.attrs[attr] or "").strip()
        where = f'HTML line {tag.line}: <{tag.name} {attr}="{_short(url)}">'
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if not scheme:
            found.append(Warning("insecure-link", f"Relative link {_short(url)!r}", where))
        elif scheme == "http":
            if not _is_loopback(parts.hostname):
                found.append(Warning("insecure-link", f"Not HTTPS: {_short(url)}", where))
        elif scheme not in _SAFE_SCHEMES:
            found.append(Warning("insecure-link", f"Unsafe scheme {scheme}: in a link", where))
    return found


def check_image_alt(html: str) -> list[Warning]:
    """Images without an `alt` attribute (`alt=""` is fine: it marks a decorative image)."""
    return [
        Warning(
            "image-alt",
            "Image without alt text",
            f'HTML line {tag.line}: <img src="{_short(tag.attrs.get("src") or "")}">',
        )
        for tag in _tags(html, "img")
        if "alt" not in tag.attrs
    ]


def check_text_links(html: str, text: str) -> list[Warning]:
    """Web and mailto links of the HTML part that the text part does not spell out."""
    found: list[Warning] = []
    seen: set[str] = set()
    for tag in _tags(html, "a", "area"):
        href = (tag.attrs.get("href") or "").strip()
        scheme = urlsplit(href).scheme.lower()
        if href in seen or scheme not in {"http", "https", "mailto"}:
            continue
        seen.add(href)
        needle = href.removeprefix("mailto:").split("?", 1)[0] if scheme == "mailto" else href
        # The whole URL, not a prefix of a longer one (".../trail-shoe" in ".../trail-shoe-v2").
        if not re.search(re.escape(needle) + _URL_END, text):
            found.append(
                Warning(
                    "text-missing-link",
                    f"The text part does not contain {_short(needle)}",
                    f'HTML line {tag.line}: <a href="{_short(href)}">',
                )
            )
    return found


def check_subject_length(subject: str, limit: int = SUBJECT_MAX_CHARS) -> list[Warning]:
    if len(subject) <= limit:
        return []
    return [
        Warning(
            "subject-length",
            f"The subject is {len(subject)} characters; mobile inboxes cut it after ~{limit}",
            f"Subject: {_short(subject)}",
        )
    ]


# --- templates -----------------------------------------------------------------------------


def _template_where(filename: str, line: int, roots: Sequence[Path]) -> str:
    path = Path(filename)
    for root in roots:
        if path.is_relative_to(root):
            return f"{path.relative_to(root).as_posix()}:{line}"
    return f"{path.name}:{line}"


def undefined_variable(exc: UndefinedError, roots: Sequence[Path]) -> Warning:
    """Where a render stopped on an undefined variable (StrictUndefined), from the traceback.

    Jinja rewrites tracebacks so that template frames carry the template file and line.
    """
    where = "template"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not frame.filename.endswith(".py") and frame.lineno is not None:
            where = _template_where(frame.filename, frame.lineno, roots)
            break
    return Warning("undefined-variable", str(exc.message or exc), where)


def _reachable(env: Environment, name: str) -> Iterator[tuple[str, str, nodes.Template]]:
    """The template and everything it extends, includes or imports: (name, filename, ast)."""
    todo, seen = [name], set[str]()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if env.loader is None:
            return
        try:
            source, filename, _ = env.loader.get_source(env, current)
            ast = env.parse(source, current, filename)
        except (TemplateNotFound, TemplateSyntaxError):
            continue
        yield current, filename or current, ast
        todo.extend(ref for ref in meta.find_referenced_templates(ast) if ref)


def _declared(ast: nodes.Template) -> set[str]:
    """Names a template binds itself ({% set %}, {% for %}, imports, macros), seen by includes."""
    targets: list[nodes.Node] = [n.target for n in ast.find_all(nodes.Assign)]
    targets += [n.target for n in ast.find_all(nodes.AssignBlock)]
    targets += [n.target for n in ast.find_all(nodes.For)]
    names: set[str] = set()
    for target in targets:  # a Name, or a Tuple of Names ({% for a, b in ... %})
        found = [target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)
        names.update(n.name for n in found if isinstance(n, nodes.Name))
    for imp in ast.find_all(nodes.Import):
        names.add(imp.target)
    for from_imp in ast.find_all(nodes.FromImport):
        names.update(n if isinstance(n, str) else n[1] for n in from_imp.names)
    for macro in ast.find_all(nodes.Macro):
        names.add(macro.name)
    return names


def check_undeclared_variables(
    env: Environment, template: str, known: Collection[str], roots: Sequence[Path]
) -> list[Warning]:
    """Variables a template (or anything it includes) reads but nobody provides.

    This finds them in branches the current data does not take, which a render cannot.
    """
    trees = list(_reachable(env, template))
    bound = set(known) | set(env.globals)
    for _, _, ast in trees:
        bound |= _declared(ast)
    found: list[Warning] = []
    for _, filename, ast in trees:
        missing = meta.find_undeclared_variables(ast) - bound
        for name in sorted(missing):
            line = min(
                (n.lineno for n in ast.find_all(nodes.Name) if n.name == name and n.ctx == "load"),
                default=1,
            )
            found.append(
                Warning(
                    "undefined-variable",
                    f"{name!r} is not provided by the renderer",
                    _template_where(filename, line, roots),
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class UsedMessage:
    """A gettext msgid a template (or the renderer) uses, and where."""

    msgid: str
    where: str


def template_messages(env: Environment, template: str, roots: Sequence[Path]) -> list[UsedMessage]:
    """The msgids of `{% trans %}` blocks and `_()` calls in a template and its includes."""
    used: list[UsedMessage] = []
    for _, filename, ast in _reachable(env, template):
        for line, _func, message in extract_from_ast(ast, GETTEXT_FUNCTIONS):
            msgid = message if isinstance(message, str) else (message or (None,))[0]
            if msgid:
                used.append(UsedMessage(msgid, _template_where(filename, line, roots)))
    return used


def _wordy(msgid: str) -> bool:
    # A one-word label ("PayPal", "No", "Email: %(address)s") may rightly read the same in
    # another language; a copied sentence of two or more words is an untranslated one.
    return len(_WORD.findall(_PLACEHOLDER.sub(" ", msgid))) >= 2


def check_untranslated(
    language: str,
    used: Iterable[UsedMessage],
    catalog: Mapping[str, str | None],
    source_language: str = "en",
) -> list[Warning]:
    """Strings used by the template that the locale's catalog leaves in the source language.

    `catalog` maps msgid -> msgstr, with None for empty or fuzzy entries; a msgid absent from it
    is missing from the catalog. An msgstr equal to its msgid counts as untranslated when the
    msgid has two or more words.
    """
    if language.split("_")[0].split("-")[0] == source_language:
        return []
    found: list[Warning] = []
    seen: set[str] = set()
    for message in used:
        if message.msgid in seen:
            continue
        seen.add(message.msgid)
        if message.msgid not in catalog:
            problem = "missing from"
        elif catalog[message.msgid] is None:
            problem = "empty or fuzzy in"
        elif catalog[message.msgid] == message.msgid and _wordy(message.msgid):
            problem = "identical to the source in"
        else:
            continue
        found.append(
            Warning(
                "untranslated",
                f"{_short(message.msgid)!r} is {problem} the {language} catalog",
                message.where,
            )
        )
    return found
