"""MIME assembly: multipart/alternative with the headers a transactional email needs."""

from __future__ import annotations

import uuid
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr

from cancelnotify.clock import utcnow
from cancelnotify.mail.render import RenderedEmail
from cancelnotify.settings import Settings


def _domain(settings: Settings) -> str:
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "cancelnotify.invalid"


def make_message_id(notification_id: uuid.UUID, settings: Settings) -> str:
    """One Message-ID per notification, stored before the first send and reused on every retry."""
    return f"<{notification_id}@{_domain(settings)}>"


def build_message(
    rendered: RenderedEmail,
    settings: Settings,
    *,
    to: str,
    message_id: str,
    to_name: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    name, addr = getaddresses([settings.mail_from])[0]
    msg["From"] = Address(display_name=name, addr_spec=addr)
    msg["To"] = Address(
        display_name=(to_name or "").replace("\r", " ").replace("\n", " "), addr_spec=to
    )
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(date or utcnow())
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg
