"""The hot-path MIME builder says what the email package says, injection attempts included."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses

import pytest

from cancelnotify.mail.message import (
    build_message,
    build_message_bytes,
    clean_header_text,
    make_message_id,
    wire_message,
)
from cancelnotify.mail.render import RenderedEmail, Renderer
from cancelnotify.mail.transport import WireMessage, data_payload
from cancelnotify.schemas.event import Reason
from cancelnotify.settings import Settings

from .conftest import NOTIFICATION_ID, REFERENCE, MakeEvent, make_settings
from .test_message import EXPECTED_HEADERS, WHEN, header_names

NAMES = [
    "Ana",
    "Zoë O'Brien-Łukasiewicz",
    'Jean "JJ" Dupont, Jr.',
    "X\r\nBcc: evil@x",
    "=?UTF-8?Q?=0A?=Bcc: evil@x",
    "Ana =?utf-8?b?DQpCY2M6IGV2aWxAeA==?= García",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "Maximilian-Alexander Ferdinand von und zu Hohenzollern-Sigmaringen-Ölberg",
    "",
]


def parse(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def both(
    renderer: Renderer,
    settings: Settings,
    make_event: MakeEvent,
    eight_bit: bool = False,
    **kwargs: object,
) -> tuple[bytes, bytes]:
    event = make_event(**kwargs)
    rendered = renderer.render(event, notification_id=NOTIFICATION_ID, reference=REFERENCE)
    args = {
        "to": str(event.customer.email),
        "to_name": event.customer.first_name,
        "message_id": make_message_id(NOTIFICATION_ID, settings),
        "date": WHEN,
    }
    fast = build_message_bytes(rendered, settings, eight_bit=eight_bit, **args)  # type: ignore[arg-type]
    reference = build_message(rendered, settings, eight_bit=eight_bit, **args).as_bytes()  # type: ignore[arg-type]
    return fast, reference


def assert_same(fast: bytes, reference: bytes, to_name: str | None = None) -> None:
    assert fast.split(b"\r\n\r\n", 1)[0].isascii()
    assert header_names(fast) == header_names(reference)
    a, b = parse(fast), parse(reference)
    for name in ("Message-ID", "Date", "From", "Reply-To", "Subject", "Content-Language"):
        assert str(a[name]) == str(b[name]), name
    # The stdlib folds long encoded names mid-word ("Sigmari ngen"); ours must decode exactly.
    assert a["To"].addresses[0].display_name == clean_header_text(to_name or "")
    assert a["To"].addresses[0].addr_spec == b["To"].addresses[0].addr_spec
    assert [p.get_content_type() for p in a.iter_parts()] == ["text/plain", "text/html"]
    for pa, pb in zip(a.iter_parts(), b.iter_parts(), strict=True):
        assert pa.get_content() == pb.get_content()
        assert pa["Content-Transfer-Encoding"] == pb["Content-Transfer-Encoding"]
    assert all(len(line) <= 998 for line in fast.split(b"\r\n"))
    assert_crlf_only(fast)


def assert_crlf_only(raw: bytes) -> None:
    """What `WireMessage.crlf` promises: every CR and LF is part of a CRLF."""
    assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")


def encodings(raw: bytes) -> set[str]:
    return {str(p["Content-Transfer-Encoding"]) for p in parse(raw).iter_parts()}


class TestSameMessage:
    @pytest.mark.parametrize("eight_bit", [False, True], ids=["qp", "8bit"])
    @pytest.mark.parametrize("name", NAMES)
    @pytest.mark.parametrize("locale", ["en", "de", "fr", "es", "it", "nl"])
    def test_names_and_locales(
        self,
        renderer: Renderer,
        settings: Settings,
        make_event: MakeEvent,
        name: str,
        locale: str,
        eight_bit: bool,
    ) -> None:
        fast, reference = both(
            renderer,
            settings,
            make_event,
            eight_bit,
            **{"customer.first_name": name or None, "customer.locale": locale},
        )
        assert_same(fast, reference, name)
        assert encodings(fast) == ({"8bit"} if eight_bit else {"quoted-printable"})
        assert header_names(fast) == EXPECTED_HEADERS
        head = fast.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head
        parsed = parse(fast)
        assert [a for _, a in getaddresses(parsed.get_all("To", []))] == ["ana@example.com"]

    @pytest.mark.parametrize("reason", list(Reason))
    def test_every_reason(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent, reason: Reason
    ) -> None:
        fast, reference = both(
            renderer, settings, make_event, **{"cancellation.reason": reason.value}
        )
        assert_same(fast, reference, "Ana")

    def test_sender_without_display_name_and_no_reply_to(
        self, renderer: Renderer, make_event: MakeEvent
    ) -> None:
        settings = make_settings(reply_to=None, mail_from="orders@shop.example")
        fast, reference = both(renderer, settings, make_event)
        assert_same(fast, reference, "Ana")
        assert str(parse(fast)["From"]) == "Example Shop <orders@shop.example>"

    def test_non_ascii_recipient_takes_the_general_path(
        self, renderer: Renderer, settings: Settings, make_event: MakeEvent
    ) -> None:
        fast, reference = both(
            renderer, settings, make_event, **{"customer.email": "zoë@exämple.de"}
        )
        assert parse(fast)["To"] == parse(reference)["To"]


class TestEightBit:
    """Unencoded parts for a relay with 8BITMIME, and only where RFC 5322's 998 octets allow."""

    def rendered(self, html: str, text: str) -> RenderedEmail:
        return RenderedEmail(subject="Your order", html=html, text=text, locale="en")

    def build(self, settings: Settings, rendered: RenderedEmail) -> WireMessage:
        return wire_message(
            rendered,
            settings,
            to="ana@example.com",
            to_name="Ana",
            message_id=make_message_id(NOTIFICATION_ID, settings),
        )

    def test_a_part_with_a_line_over_998_octets_stays_quoted_printable(
        self, settings: Settings
    ) -> None:
        long_line = "<p>" + "é" * 498 + "</p>"  # 1,003 octets in UTF-8
        wire = self.build(settings, self.rendered(long_line, "Grüße,\nAna"))
        parts = list(parse(wire.data).iter_parts())
        assert [p["Content-Transfer-Encoding"] for p in parts] == ["8bit", "quoted-printable"]
        assert parts[1].get_content().replace("\r\n", "\n") == long_line + "\n"
        assert all(len(line) <= 998 for line in wire.data.split(b"\r\n"))

    @pytest.mark.parametrize("text", ["a\rb\r\n.c\n\n.", "\r\n\r", ".\n..\r", "Grüße\r\n"])
    def test_crlf_line_ends_whatever_the_parts_had(self, settings: Settings, text: str) -> None:
        wire = self.build(settings, self.rendered(f"<p>{text}</p>", text))
        assert wire.crlf
        assert_crlf_only(wire.data)
        assert data_payload(wire.data, crlf=True) == data_payload(wire.data)
        if wire.seven_bit is not None:
            assert_crlf_only(wire.seven_bit())

    def test_the_general_path_makes_no_promise(self, settings: Settings) -> None:
        rendered = self.rendered("<p>Hi</p>", "Hi")
        wire = wire_message(
            rendered,
            settings,
            to="zoë@exämple.de",
            message_id=make_message_id(NOTIFICATION_ID, settings),
        )
        assert not wire.crlf

    def test_ascii_parts_are_7bit_and_need_no_8bitmime(self, settings: Settings) -> None:
        wire = self.build(settings, self.rendered("<p>Hello</p>", "Hello"))
        assert wire.seven_bit is None
        assert encodings(wire.data) == {"7bit"}

    def test_the_seven_bit_form_is_the_same_message_quoted_printable(
        self, settings: Settings
    ) -> None:
        wire = self.build(settings, self.rendered("<p>Grüße</p>", "Grüße\r\nAna"))
        assert wire.seven_bit is not None
        seven = wire.seven_bit()
        assert seven.isascii()
        assert not wire.data.isascii()
        a, b = parse(wire.data), parse(seven)
        assert encodings(wire.data) == {"8bit"}
        assert encodings(seven) == {"quoted-printable"}
        for name in ("Message-ID", "Date", "From", "To", "Subject"):
            assert a[name] == b[name]
        for pa, pb in zip(a.iter_parts(), b.iter_parts(), strict=True):
            assert pa.get_content() == pb.get_content()
