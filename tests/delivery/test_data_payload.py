"""The DATA payload is what aiosmtplib's own DATA would write, byte for byte."""

from __future__ import annotations

import random

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from cancelnotify.mail.transport import data_payload


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
