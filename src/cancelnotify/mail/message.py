"""Build the MIME message (multipart/alternative text + HTML) with safe, correct headers.

Headers go through `email.message.EmailMessage` with `email.policy.SMTP` and addresses through
`email.headerregistry.Address`, which refuse CR/LF. Customer-supplied header text (names, the
subject that names the order) is also cleaned first: control characters become spaces and
encoded-word lookalikes (`=?...?=`) are broken up, because the header parser would decode them
and Pythons without the CVE-2024-6923 fix then write the decoded newline back unencoded.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import uuid
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from typing import Final, Literal, NamedTuple

from cancelnotify.mail.render import RenderedEmail, Renderer
from cancelnotify.mail.transport import WireMessage
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MESSAGE_ID: Final = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_FALLBACK_DOMAIN: Final = "cancelnotify.invalid"
# One bare addr-spec: no display name, no list, no whitespace, no comment.
_ADDR_SPEC: Final = re.compile(r"[^\s<>,;:\"()\[\]\\@]+@[^\s<>,;:\"()\[\]\\@]+")


class _CachedHeaderRegistry(HeaderRegistry):
    """HeaderRegistry that builds each header class once (the stdlib makes one per lookup)."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


# SMTP policy (CRLF, 8bit-safe folding) with the cached registry: same output, less work.
_POLICY: Final = SMTP.clone(header_factory=_CachedHeaderRegistry())


def clean_header_text(value: str) -> str:
    """One line of header text that cannot smuggle in a header: no controls, no encoded words."""
    value = _CONTROL.sub(" ", value).replace("=?", "= ?")
    return " ".join(value.split())


@functools.lru_cache(maxsize=8)
def _mailbox(value: str, setting: str) -> Address:
    # Cached: MAIL_FROM and REPLY_TO are settings, parsed once (Address is immutable).
    name, addr = parseaddr(value)
    if "@" not in addr:
        raise ValueError(f"{setting} is not an email address")
    username, domain = addr.rsplit("@", 1)
    return Address(display_name=clean_header_text(name), username=username, domain=domain)


@functools.lru_cache(maxsize=8)
def _domain_of(mail_from: str) -> str:
    # Cached: one parse per MAIL_FROM, not one per webhook (profiled on the ingest path).
    _, addr = parseaddr(mail_from)
    local, at, domain = addr.rpartition("@")
    domain = domain.strip().lower()
    if not (local and at and domain) or _CONTROL.search(domain) or not domain.isascii():
        return _FALLBACK_DOMAIN
    return domain


def make_message_id(notification_id: uuid.UUID, settings: Settings) -> str:
    """`<notification-uuid@domain-of-MAIL_FROM>`: the same for every attempt of one notification."""
    return f"<{notification_id}@{_domain_of(settings.mail_from)}>"


def build_message(
    rendered: RenderedEmail,
    settings: Settings,
    *,
    to: str,
    message_id: str,
    to_name: str | None = None,
    date: datetime | None = None,
    eight_bit: bool = False,
) -> EmailMessage:
    """The email ready for SMTP: multipart/alternative (text, then HTML), UTF-8,
    quoted-printable (or, with `eight_bit`, unencoded where the lines allow it).

    Raises ValueError for an unusable recipient, sender or Message-ID (a bug, not bad luck).
    """
    if not _MESSAGE_ID.match(message_id):
        raise ValueError("message_id must look like <unique@domain>")
    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    sender = _mailbox(settings.mail_from, "MAIL_FROM")
    if not sender.display_name:
        sender = Address(
            display_name=clean_header_text(settings.shop_name),
            username=sender.username,
            domain=sender.domain,
        )
    if not _ADDR_SPEC.fullmatch(to):
        raise ValueError("to must be one bare email address")
    username, domain = to.rsplit("@", 1)
    recipient = Address(
        display_name=clean_header_text(to_name or ""), username=username, domain=domain
    )

    msg = EmailMessage(policy=_POLICY)
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(when)
    msg["From"] = sender
    msg["To"] = recipient
    if settings.reply_to:
        msg["Reply-To"] = _mailbox(settings.reply_to, "REPLY_TO")
    msg["Subject"] = clean_header_text(rendered.subject)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    # The same choice as the hot path's; the email package encodes the bodies itself.
    msg.set_content(rendered.text, cte=_cte(_lf_body(rendered.text), eight_bit))
    msg.add_alternative(rendered.html, subtype="html", cte=_cte(_lf_body(rendered.html), eight_bit))
    # After the parts: set_content/add_alternative move Content-* headers into the first part.
    msg["Content-Language"] = clean_header_text(rendered.locale)
    return msg


# "=" never appears unencoded in quoted-printable bodies; 7bit/8bit bodies are checked for it.
_BOUNDARY_PREFIX: Final = "=_cn_"


# RFC 5322 §2.1.1: at most 998 octets per line, CRLF excluded. A part with a longer line (or a
# NUL) cannot travel as 7bit/8bit and is quoted-printable instead.
_MAX_LINE: Final = 998


def _transfer_encoding(text: str, eight_bit: bool) -> tuple[str, bytes]:
    """The Content-Transfer-Encoding of one text part and its body with LF line ends.

    With `eight_bit` (the relay offers 8BITMIME, RFC 6152) a part whose lines fit goes as it
    is, as Django's mail does: nothing to encode here, and for the relay fewer and shorter
    lines to read than quoted-printable's 76-column ones (aiosmtpd: about a third less CPU per
    message, measured). Otherwise quoted-printable, through binascii's C encoder.
    """
    data = _lf_body(text)
    cte = _cte(data, eight_bit)
    return cte, data if cte != "quoted-printable" else binascii.b2a_qp(data, istext=True)


def _lf_body(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"  # as EmailMessage.set_content does: a part ends with a line break
    return body.encode("utf-8")


def _cte(data: bytes, eight_bit: bool) -> str:
    """7bit/8bit when allowed and every line fits, else quoted-printable."""
    if eight_bit and b"\x00" not in data and max(map(len, data.split(b"\n"))) <= _MAX_LINE:
        return "7bit" if data.isascii() else "8bit"
    return "quoted-printable"


def _header_text(name: str, value: str) -> str:
    """RFC 2047 encoded (utf-8) when not ASCII, folded at 78 columns when long."""
    if value.isascii() and len(name) + len(value) < 76:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep="\r\n")


def _address(name: str, addr: str) -> str:
    return formataddr((name, addr), charset="utf-8") if name else addr


def build_message_bytes(
    rendered: RenderedEmail,
    settings: Settings,
    *,
    to: str,
    message_id: str,
    to_name: str | None = None,
    date: datetime | None = None,
    eight_bit: bool = False,
) -> bytes:
    """The same message as `build_message(...).as_bytes()`, assembled directly (the hot path).

    `email.message.EmailMessage` costs about 4 ms per message to build and serialise, more than
    rendering; here the validated, cleaned values are written into a fixed multipart layout.
    Non-ASCII addresses, which need the email package's SMTPUTF8 handling, take the general
    path. With `eight_bit`, parts whose lines fit are sent unencoded (see `_transfer_encoding`).
    """
    return _assemble(rendered, settings, to, message_id, to_name, date, eight_bit).data


def wire_message(
    rendered: RenderedEmail,
    settings: Settings,
    *,
    to: str,
    message_id: str,
    to_name: str | None = None,
) -> WireMessage:
    """The message for `Mailer.send`: unencoded parts for a relay that offers 8BITMIME, and
    the same message (same Date and Message-ID) all quoted-printable for one that does not."""
    when = datetime.now(UTC)
    assembled = _assemble(rendered, settings, to, message_id, to_name, when, True)
    if not assembled.eight_bit:
        return WireMessage(assembled.data, crlf=assembled.crlf)
    seven_bit = functools.partial(
        build_message_bytes,
        rendered,
        settings,
        to=to,
        message_id=message_id,
        to_name=to_name,
        date=when,
    )
    return WireMessage(assembled.data, seven_bit, crlf=assembled.crlf)


class _Assembled(NamedTuple):
    data: bytes
    eight_bit: bool  # a part is 8bit: the MAIL command must then say BODY=8BITMIME
    crlf: bool  # every line ends in CRLF, none in a lone CR or LF (see WireMessage)


def _assemble(
    rendered: RenderedEmail,
    settings: Settings,
    to: str,
    message_id: str,
    to_name: str | None,
    date: datetime | None,
    eight_bit: bool,
) -> _Assembled:
    """The message, written here with CRLF line ends, or by the email package (general)."""
    if not (_MESSAGE_ID.match(message_id) and _ADDR_SPEC.fullmatch(to) and to.isascii()):
        general = build_message(
            rendered, settings, to=to, message_id=message_id, to_name=to_name, date=date
        )
        return _Assembled(general.as_bytes(), False, False)
    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("date must be timezone-aware")
    sender = _mailbox(settings.mail_from, "MAIL_FROM")
    if not sender.addr_spec.isascii() or (settings.reply_to and not settings.reply_to.isascii()):
        general = build_message(
            rendered, settings, to=to, message_id=message_id, to_name=to_name, date=when
        )
        return _Assembled(general.as_bytes(), False, False)
    sender_name = sender.display_name or clean_header_text(settings.shop_name)
    parts = [
        (subtype, *_transfer_encoding(text, eight_bit))
        for subtype, text in (("plain", rendered.text), ("html", rendered.html))
    ]
    boundary = _BOUNDARY_PREFIX + uuid.uuid4().hex
    while any(boundary.encode() in body for _, _, body in parts):  # pragma: no cover - 2**-122
        boundary = _BOUNDARY_PREFIX + uuid.uuid4().hex
    lines = [
        f"Message-ID: {message_id}",
        f"Date: {format_datetime(when)}",
        # formataddr quotes specials and RFC 2047-encodes non-ASCII names; names are at most
        # a few hundred characters, far under the 998 limit, so these lines are not folded.
        f"From: {_address(sender_name, sender.addr_spec)}",
        f"To: {_address(clean_header_text(to_name or ''), to)}",
    ]
    if settings.reply_to:
        reply_to = _mailbox(settings.reply_to, "REPLY_TO")
        lines.append(f"Reply-To: {_address(reply_to.display_name, reply_to.addr_spec)}")
    lines += [
        f"Subject: {_header_text('Subject', clean_header_text(rendered.subject))}",
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        f"Content-Language: {clean_header_text(rendered.locale)}",
        "",
        "",
    ]
    # Header lines are cleaned of CR and LF (folded ones with CRLF), bodies have LF line ends
    # only (`_lf_body`; quoted-printable keeps them): with CRLF written here, every line ends
    # in CRLF, which saves the DATA payload its line-end passes (`WireMessage.crlf`).
    chunks = ["\r\n".join(lines).encode("ascii")]
    for subtype, cte, body in parts:
        chunks += [
            f"--{boundary}\r\nContent-Type: text/{subtype}; "
            f'charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n\r\n'.encode(),
            body.replace(b"\n", b"\r\n"),
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return _Assembled(b"".join(chunks), any(cte == "8bit" for _, cte, _ in parts), True)


def preview_ids(event: CancellationEventV1) -> tuple[uuid.UUID, str]:
    """A stable notification id and reference for rendering without a stored notification."""
    notification_id = uuid.uuid5(uuid.NAMESPACE_URL, f"cancelnotify:preview:{event.event_id}")
    code = base64.b32encode(notification_id.bytes[:5]).decode("ascii")
    return notification_id, f"CN-{code}"


def render_to_format(
    renderer: Renderer,
    event: CancellationEventV1,
    fmt: Literal["html", "text", "eml"],
    settings: Settings,
    locale: str | None = None,
    *,
    template: str = "order_cancelled",
    notification_id: uuid.UUID | None = None,
    reference: str | None = None,
) -> str:
    """What `cancelnotify render` prints: the HTML part, the text part, or the whole .eml."""
    preview_id, preview_reference = preview_ids(event)
    notification_id = notification_id or preview_id
    rendered = renderer.render(
        event,
        notification_id=notification_id,
        reference=reference or preview_reference,
        template=template,
        locale=locale,
    )
    if fmt == "html":
        return rendered.html
    if fmt == "text":
        return rendered.text
    customer = event.customer
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
    msg = build_message(
        rendered,
        settings,
        to=customer.email,
        to_name=name or None,
        message_id=make_message_id(notification_id, settings),
        date=event.occurred_at,
    )
    return msg.as_string(policy=SMTP.clone(linesep="\n"))
