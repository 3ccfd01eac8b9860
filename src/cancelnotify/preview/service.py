"""The template workbench: render a scenario or pasted event, run the checks, send a test email.

`Workbench` holds no request state. In `dev` it is *live*: before each preview it compares the
template and catalog files' modification times with the last build and, if any changed, builds a
fresh `Renderer` (the service's own renderer compiles templates once and never reloads, which is
right for sending). In `serve` it uses the app's renderer as is.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final, TypeVar

from babel.messages.pofile import read_po
from jinja2 import UndefinedError
from pydantic import EmailStr, TypeAdapter, ValidationError

from cancelnotify.errors import NotFound, field_errors
from cancelnotify.mail.message import build_message, make_message_id, preview_ids
from cancelnotify.mail.render import (
    REASON_COPY,
    TEMPLATE_PARTS,
    RenderedEmail,
    Renderer,
    template_search_path,
)
from cancelnotify.mail.transport import Mailer, SendResult
from cancelnotify.preview import checks
from cancelnotify.preview.checks import UsedMessage, Warning
from cancelnotify.preview.scenarios import DEFAULT_SCENARIO, SCENARIOS, Scenario
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

DEFAULT_TEMPLATE: Final = "order_cancelled"
_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)
T = TypeVar("T")


# --- renderer (live in dev) -----------------------------------------------------------------


def _fingerprint(roots: list[Path]) -> tuple[tuple[str, int, int], ...]:
    found: list[tuple[str, int, int]] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def load_catalog(roots: list[Path], language: str) -> dict[str, str | None]:
    """msgid -> msgstr of one language, overrides first; None for empty or fuzzy entries."""
    merged: dict[str, str | None] = {}
    for root in reversed(roots):  # defaults first, overrides laid on top
        path = root / "locale" / language / "LC_MESSAGES" / "messages.po"
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        for message in catalog:
            if not message.id:
                continue
            msgid = message.id if isinstance(message.id, str) else message.id[0]
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            usable = not message.fuzzy and all(strings)
            if usable or msgid not in merged:
                merged[msgid] = str(strings[0]) if usable else None
    return merged


class Build:
    """One renderer and what was derived from its files: catalogs and template analysis."""

    def __init__(self, renderer: Renderer, roots: list[Path], fingerprint: Any = ()) -> None:
        self.renderer = renderer
        self.roots = roots
        self.fingerprint = fingerprint
        self._lock = threading.Lock()
        self._catalogs: dict[str, dict[str, str | None]] = {}
        self._analysis: dict[tuple[str, ...], list[Any]] = {}

    def analysed(self, key: tuple[str, ...], compute: Callable[[], list[T]]) -> list[T]:
        """`compute()` once per build: static checks re-parse every template file."""
        with self._lock:
            found = self._analysis.get(key)
        if found is None:
            found = compute()
            with self._lock:
                self._analysis[key] = found
        return list(found)

    def catalog(self, language: str) -> dict[str, str | None]:
        with self._lock:
            found = self._catalogs.get(language)
        if found is None:
            found = load_catalog(self.roots, language)
            with self._lock:
                self._catalogs[language] = found
        return found


class RendererSource:
    """The renderer to preview with; in live mode rebuilt when a template or catalog changes."""

    def __init__(self, settings: Settings, renderer: Renderer, *, live: bool) -> None:
        self.roots = template_search_path(settings)
        self.live = live
        self._settings = settings
        self._lock = threading.Lock()
        self._build = Build(renderer, self.roots, _fingerprint(self.roots) if live else ())

    def current(self) -> Build:
        """The build to use for one request (a fresh one if files changed, in live mode)."""
        with self._lock:
            if self.live:
                now = _fingerprint(self.roots)
                if now != self._build.fingerprint:
                    self._build = Build(Renderer(self._settings), self.roots, now)
            return self._build


# --- custom events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One line of the pretty-printed pasted event, with the errors that belong to it."""

    number: int
    text: str
    errors: tuple[FieldError, ...]


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    event: CancellationEventV1 | None
    errors: tuple[FieldError, ...]
    lines: tuple[JsonLine, ...]


def _json_lines(value: Any) -> list[tuple[str, str]]:
    """Pretty-print JSON as (line, dotted path of the value on that line)."""
    out: list[tuple[str, str]] = []

    def emit(v: Any, path: str, depth: int, prefix: str, comma: str) -> None:
        pad = "  " * depth
        if isinstance(v, dict) and v:
            out.append((f"{pad}{prefix}{{", path))
            for i, (key, child) in enumerate(v.items()):
                sub = f"{path}.{key}" if path else str(key)
                label = json.dumps(key, ensure_ascii=False) + ": "
                emit(child, sub, depth + 1, label, "," if i < len(v) - 1 else "")
            out.append((f"{pad}}}{comma}", path))
        elif isinstance(v, list) and v:
            out.append((f"{pad}{prefix}[", path))
            for i, child in enumerate(v):
                sub = f"{path}.{i}" if path else str(i)
                emit(child, sub, depth + 1, "", "," if i < len(v) - 1 else "")
            out.append((f"{pad}]{comma}", path))
        else:
            out.append((f"{pad}{prefix}{json.dumps(v, ensure_ascii=False)}{comma}", path))

    emit(value, "", 0, "", "")
    return out


def _annotate(value: Any, errors: tuple[FieldError, ...]) -> tuple[JsonLine, ...]:
    lines = _json_lines(value)
    first_line: dict[str, int] = {}
    for index, (_, path) in enumerate(lines):
        first_line.setdefault(path, index)
    attached: dict[int, list[FieldError]] = {}
    for error in errors:
        parts = [] if error.field == "body" else error.field.split(".")
        # A missing field has no line of its own: it goes next to its nearest present parent.
        while ".".join(parts) not in first_line and parts:
            parts.pop()
        attached.setdefault(first_line.get(".".join(parts), 0), []).append(error)
    return tuple(
        JsonLine(i + 1, text, tuple(attached.get(i, ()))) for i, (text, _) in enumerate(lines)
    )


def parse_event(text: str) -> ParsedEvent:
    """Validate pasted JSON against the canonical schema; errors name the field, never a trace."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        error = FieldError(
            "body", f"Not valid JSON: {exc.msg} (line {exc.lineno}, col {exc.colno})"
        )
        return ParsedEvent(None, (error,), ())
    if not isinstance(data, dict):
        error = FieldError("body", "The event must be a JSON object")
        return ParsedEvent(None, (error,), ())
    try:
        event = CancellationEventV1.model_validate(data)
    except ValidationError as exc:
        errors = tuple(FieldError(e["field"], e["message"]) for e in field_errors(exc))
        return ParsedEvent(None, errors, _annotate(data, errors))
    return ParsedEvent(event, (), _annotate(data, ()))


# --- previews --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    """Everything the preview page shows for one template, locale and event."""

    template: str
    locale: str
    event: CancellationEventV1
    rendered: RenderedEmail | None
    eml: str | None
    headers: tuple[tuple[str, str], ...]
    warnings: tuple[Warning, ...]
    variables: tuple[tuple[str, str], ...]

    @property
    def sizes(self) -> dict[str, int]:
        if self.rendered is None:
            return {}
        return {
            "html": len(self.rendered.html.encode()),
            "text": len(self.rendered.text.encode()),
            "eml": len((self.eml or "").encode()),
        }


def event_json(event: CancellationEventV1) -> str:
    return json.dumps(event.model_dump(mode="json"), ensure_ascii=False, indent=2)


def _dedupe(warnings: list[Warning]) -> tuple[Warning, ...]:
    seen: set[tuple[str, str]] = set()
    out: list[Warning] = []
    for warning in warnings:
        if (warning.check, warning.where) not in seen:
            seen.add((warning.check, warning.where))
            out.append(warning)
    return tuple(out)


class Workbench:
    """Renders previews and test emails; pure CPU apart from the live renderer's file checks."""

    def __init__(self, settings: Settings, source: RendererSource) -> None:
        self.settings = settings
        self.source = source

    def templates(self) -> list[str]:
        return self.source.current().renderer.templates()

    def locales(self) -> list[str]:
        return self.source.current().renderer.locales()

    @staticmethod
    def scenarios() -> list[Scenario]:
        return list(SCENARIOS.values())

    @staticmethod
    def scenario(name: str) -> Scenario:
        found = SCENARIOS.get(name)
        if found is None:
            raise NotFound(f"No scenario {name!r}")
        return found

    def check_choice(self, template: str, locale: str | None) -> None:
        renderer = self.source.current().renderer
        if template not in renderer.templates():
            raise NotFound(f"No template {template!r}")
        if locale is not None and locale not in renderer.locales():
            raise NotFound(f"No locale {locale!r}")

    def preview(self, event: CancellationEventV1, *, template: str, locale: str | None) -> Preview:
        """Render and check; a render that stops on an undefined variable is a warning too."""
        self.check_choice(template, locale)
        build = self.source.current()
        renderer = build.renderer
        notification_id, reference = preview_ids(event)
        warnings: list[Warning] = []
        context: dict[str, Any] | None = None
        rendered: RenderedEmail | None = None
        try:
            context = renderer.template_context(
                event,
                notification_id=notification_id,
                reference=reference,
                template=template,
                locale=locale,
            )
            rendered = renderer.render(
                event,
                notification_id=notification_id,
                reference=reference,
                template=template,
                locale=locale,
            )
        except UndefinedError as exc:
            warnings.append(checks.undefined_variable(exc, self.source.roots))
        language = rendered.locale if rendered else str((context or {}).get("lang", "en"))
        env, roots = renderer.environment, self.source.roots
        names = [f"email/{template}.{part}" for part in TEMPLATE_PARTS]
        if context is not None:
            known = sorted(context)
            warnings += build.analysed(
                ("undeclared", template, *known),
                lambda: [
                    w
                    for name in names
                    for w in checks.check_undeclared_variables(env, name, known, roots)
                ],
            )
        used: list[UsedMessage] = build.analysed(
            ("messages", template),
            lambda: [m for name in names for m in checks.template_messages(env, name, roots)],
        )
        reason = event.cancellation.reason
        used.append(UsedMessage(REASON_COPY[reason], f"mail/render.py REASON_COPY[{reason}]"))
        warnings += checks.check_untranslated(language, used, build.catalog(language))
        eml: str | None = None
        headers: tuple[tuple[str, str], ...] = ()
        css = renderer.css_inlining
        if not css.at_compile_time:
            warnings.append(Warning("css-per-message", css.reason, "email/base.html"))
        if rendered is not None:
            warnings += checks.check_subject_length(rendered.subject)
            warnings += checks.check_html_size(rendered.html)
            warnings += checks.check_links(rendered.html)
            warnings += checks.check_image_alt(rendered.html)
            warnings += checks.check_text_links(rendered.html, rendered.text)
            message = self._message(event, rendered, event.customer.email, notification_id)
            eml = message.as_string(policy=SMTP.clone(linesep="\n"))
            headers = tuple((k, str(v)) for k, v in message.items())
        variables = tuple(
            (key, repr(value)) for key, value in (context or {}).items() if key != "i18n"
        )
        return Preview(
            template=template,
            locale=language,
            event=event,
            rendered=rendered,
            eml=eml,
            headers=headers,
            warnings=_dedupe(warnings),
            variables=variables,
        )

    def _message(
        self,
        event: CancellationEventV1,
        rendered: RenderedEmail,
        to: str,
        notification_id: uuid.UUID,
    ) -> EmailMessage:
        customer = event.customer
        name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
        return build_message(
            rendered,
            self.settings,
            to=to,
            to_name=name or None,
            message_id=make_message_id(notification_id, self.settings),
            date=event.occurred_at,
        )

    def test_message(self, preview: Preview, to: str) -> EmailMessage:
        """The previewed email addressed to `to`, with a fresh Message-ID (it is a new email).

        Raises ValueError with a readable message for an unusable address or a failed render.
        """
        try:
            address = _EMAIL.validate_python(to.strip())
        except ValidationError as exc:
            raise ValueError(f"{to!r} is not an email address") from exc
        if preview.rendered is None:
            raise ValueError("The email did not render; fix the warnings first")
        message = self._message(preview.event, preview.rendered, address, uuid.uuid4())
        message["X-Cancelnotify-Preview"] = "test email"
        return message

    async def send_test(self, mailer: Mailer, message: EmailMessage) -> SendResult:
        sender = parseaddr(self.settings.mail_from)[1]
        recipient = parseaddr(str(message["To"]))[1]
        return await mailer.send(sender, recipient, message.as_bytes())

    def summary(self) -> Iterator[tuple[str, str, Scenario, int]]:
        """(template, locale, scenario, warning count) for every combination, for the index."""
        for template in self.templates():
            for scenario in self.scenarios():
                event = scenario.event()
                for locale in self.locales():
                    found = self.preview(event, template=template, locale=locale)
                    yield template, locale, scenario, len(found.warnings)


def default_choice(values: Mapping[str, str | None]) -> tuple[str, str]:
    """(template, scenario) from query values, defaulting to the order-cancelled email."""
    return (values.get("template") or DEFAULT_TEMPLATE, values.get("scenario") or DEFAULT_SCENARIO)
