"""The MIME message: headers, structure, encoding, and header injection attempts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses

import pytest

from cancelnotify.mail.message import (
    build_message,
    clean_header_text,
    make_message_id,
    render_to_format,
)
from cancelnotify.mail.render import RenderedEmail, Renderer
from cancelnotify.settings import Settings

from .conftest import NOTIFICATION_ID, REFERENCE, MakeEvent, make_settings

EXPECTED_HEADERS = [
    "Message-ID",
    "Date",
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
    "Content-Language",
]
WHEN = datetime(2026, 6, 9, 10, 0, tzinfo=UTC)


def wire(msg: EmailMessage) -> EmailMessage:
    """Serialise as SMTP would and parse back, so assertions see what a server sees."""
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and line[0] not in " \t"]


def build(
    renderer: Renderer, settings: Settings, event_kwargs: dict[str, object], make_event: MakeEvent
) -> EmailMessage:
    event = make_event(**event_kwargs)
    rendered = renderer.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE)
    name = " ".join(p for p in (event.customer.first_name, event.customer.last_name) if p)
    return build_message(
        rendered,
        settings,
        to=event.customer.email,
        to_name=name,
        message_id=make_message_id(NOTIFICATION_ID, settings),
        date=WHEN,
    )


class TestHeaders:
    def test_headers_and_structure(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent
    ) -> None:
        msg = build(renderer, settings, {}, make_event)
        raw = msg.as_bytes()
        assert header_names(raw) == EXPECTED_HEADERS
        parsed = wire(msg)
        assert parsed["Message-ID"] == f"<{NOTIFICATION_ID}@shop.example>"
        assert parsed["Date"] == "Tue, 09 Jun 2026 10:00:00 +0000"
        assert parsed["From"] == "Example Shop <orders@shop.example>"
        assert parsed["To"] == "Ana García <ana@example.com>"
        assert parsed["Reply-To"] == "help@shop.example"
        assert parsed["Auto-Submitted"] == "auto-generated"
        assert parsed["Subject"] == "Your order #1001 has been cancelled"
        assert parsed.get_content_type() == "multipart/alternative"
        parts = list(parsed.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
        text = parts[0].get_content()
        assert isinstance(text, str)
        assert "Hi Ana," in text
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))

    def test_non_ascii_subject_is_rfc2047(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent
    ) -> None:
        msg = build(renderer, settings, {"customer.locale": "fr-FR"}, make_event)
        raw = msg.as_bytes()
        subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
        assert b"=?utf-8?" in subject_line
        assert raw.isascii()
        assert wire(msg)["Subject"] == "Votre commande #1001 a été annulée"

    def test_message_id_is_stable_per_notification(self, settings: Settings) -> None:
        assert make_message_id(NOTIFICATION_ID, settings) == make_message_id(
            NOTIFICATION_ID, settings
        )
        assert make_message_id(uuid.uuid4(), settings) != make_message_id(NOTIFICATION_ID, settings)
        odd = make_settings(mail_from="not an address")
        assert make_message_id(NOTIFICATION_ID, odd).endswith("@cancelnotify.invalid>")

    def test_no_reply_to_when_unset(self, renderer: Renderer, make_event: MakeEvent) -> None:
        settings = make_settings(reply_to=None, mail_from="orders@shop.example")
        msg = build(renderer, settings, {}, make_event)
        assert "Reply-To" not in msg
        assert wire(msg)["From"] == "Example Shop <orders@shop.example>"

    def test_bad_inputs_raise(self, settings: Settings) -> None:
        rendered = RenderedEmail(subject="s", html="<p>h</p>", text="t", locale="en")
        good_id = make_message_id(NOTIFICATION_ID, settings)
        for to in ["a@b.example, evil@x.example", "a@b.example\r\nBcc: evil@x", "nobody"]:
            with pytest.raises(ValueError, match="to must be"):
                build_message(rendered, settings, to=to, message_id=good_id)
        with pytest.raises(ValueError, match="message_id"):
            build_message(rendered, settings, to="a@b.example", message_id="<x>\r\nBcc: y")
        with pytest.raises(ValueError, match="timezone"):
            build_message(
                rendered,
                settings,
                to="a@b.example",
                message_id=good_id,
                date=datetime(2026, 1, 1),  # noqa: DTZ001 - the point of the test
            )


class TestInjection:
    @pytest.mark.parametrize(
        "evil",
        [
            "X\r\nBcc: evil@x",
            "X\nBcc: evil@x",
            "=?UTF-8?Q?=0A?=Bcc: evil@x",
            "=?UTF-8?Q?=0D=0A?=Bcc: evil@x",
            "Ana =?utf-8?b?DQpCY2M6IGV2aWxAeA==?= García",
            "X\u2028Bcc: evil@x",
        ],
    )
    def test_names_and_subject_cannot_add_headers(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent, evil: str
    ) -> None:
        msg = build(
            renderer,
            settings,
            {"customer.first_name": evil, "order.number": evil},
            make_event,
        )
        raw = msg.as_bytes()
        assert header_names(raw) == EXPECTED_HEADERS
        assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n", 1)[0]
        parsed = wire(msg)
        recipients = getaddresses(parsed.get_all("To", []))
        assert [addr for _, addr in recipients] == ["ana@example.com"]
        assert "Bcc" not in parsed
        assert "\n" not in str(parsed["Subject"])

    def test_clean_header_text(self) -> None:
        assert clean_header_text(" a\r\n b\tc\x00d ") == "a b c d"
        assert "=?" not in clean_header_text("=?UTF-8?Q?=0A?=")


class TestRenderToFormat:
    def test_three_formats(self, renderer: Renderer, make_event: MakeEvent) -> None:
        settings = make_settings()
        event = make_event()
        html = render_to_format(renderer, event, "html", settings)
        text = render_to_format(renderer, event, "text", settings, locale="de")
        eml = render_to_format(renderer, event, "eml", settings)
        assert html.startswith("<!DOCTYPE html>")
        assert text.startswith("Ihre Bestellung #1001 wurde storniert")
        assert eml.startswith("Message-ID: <")
        assert "\r\n" not in eml
        parsed = message_from_bytes(eml.encode(), policy=policy.default)
        assert parsed["To"] == "Ana García <ana@example.com>"
        # stable across calls: previews get a deterministic id and reference
        assert (
            render_to_format(renderer, event, "eml", settings).split("boundary")[0]
            == (eml.split("boundary")[0])
        )
