"""The DATA payload and the MAIL/RCPT addresses are what aiosmtplib would write, byte for byte."""

from __future__ import annotations

import random

from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from cancelnotify.mail.transport import _DOT_ATOM_ADDRESS, _quoted, data_payload


def aiosmtplib_payload(message: bytes) -> bytes:
    # SMTPProtocol.execute_data_command, aiosmtplib 5.1.3
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


def test_same_bytes_as_aiosmtplib_on_a_corpus_of_line_ends_and_dots() -> None:
    rng = random.Random(7)
    pieces = [b"a", b"Subject: x", b".", b"..", b"\r", b"\n", b"\r\n", b"\n\r", b" ", b"\xc3\xa9"]
    corpus = [b"", b".", b"\r", b"\n", b"a", b".\r\n", b"\r\r\n", b"a\r\n.\r\n", b"\n.\n"]
    corpus += [b"".join(rng.choices(pieces, k=rng.randint(1, 40))) for _ in range(20_000)]
    differ = [m for m in corpus if data_payload(m) != aiosmtplib_payload(m)]
    assert differ == []
    assert sum(b"\r\n." in aiosmtplib_payload(m)[:-3] for m in corpus) > 5_000  # dots stuffed


def _outcome(quote: object, address: str) -> object:
    try:
        return quote(address)  # type: ignore[operator]
    except Exception as exc:  # the same refusal: an injection attempt, a non-ASCII address
        return type(exc)


def test_addresses_quoted_as_aiosmtplib_quotes_them_on_a_corpus() -> None:
    rng = random.Random(11)
    pieces = ["ana", "b", "Z9", ".", "..", "@", "-", "_", "+", "'", "~", " ", "\t", '"', "<"]
    pieces += [">", "(", ")", ",", ":", ";", "[", "]", "\\", "é", "\r\n", "example.com"]
    corpus = ["ana@example.com", "a.b+tag@sub.example.co.uk", "Ana <ana@example.com>", ""]
    corpus += [".ana@example.com", "ana.@example.com", "ana..b@example.com", "ana@-x.example"]
    corpus += ['"a b"@example.com', "ana@example.com\r\nRCPT TO:<x@y.z>", "josé@example.com"]
    corpus += ["".join(rng.choices(pieces, k=rng.randint(1, 8))) for _ in range(10_000)]
    local = ["ana", "b", "Z9", ".", "-", "+", "'", "~", "{", "é", " ", '"', "\\"]
    domain = ["example", "com", ".", "-", "x1", "é", " ", "[", "]"]
    corpus += [
        "".join(rng.choices(local, k=rng.randint(1, 4)))
        + "@"
        + "".join(rng.choices(domain, k=rng.randint(1, 4)))
        for _ in range(10_000)
    ]

    def aiosmtplib_quoted(address: str) -> bytes:
        return quote_address(address).encode("ascii")

    differ = [a for a in corpus if _outcome(_quoted, a) != _outcome(aiosmtplib_quoted, a)]
    assert differ == []
    assert sum(bool(_DOT_ATOM_ADDRESS.fullmatch(a)) for a in corpus) > 500  # the fast path
