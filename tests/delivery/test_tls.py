"""TLS to the relay: implicit TLS and STARTTLS check the certificate, and fail closed when not."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cancelnotify.mail.sink import RecordingHandler, SinkSMTP, sink_port, start_sink
from cancelnotify.mail.transport import Mailer
from cancelnotify.settings import Settings
from cancelnotify.states import Outcome

MESSAGE = b"From: a@shop.example\r\nTo: b@example.com\r\nSubject: tls\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl for this test run."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
async def implicit_tls(
    certificate: tuple[Path, Path],
) -> AsyncIterator[tuple[RecordingHandler, int]]:
    handler = RecordingHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SinkSMTP(handler, hostname="tls-sink"),
        "127.0.0.1",
        0,
        ssl=server_context(certificate),
    )
    yield handler, sink_port(server)
    server.close()


def settings_for(port: int, security: str, ca_file: Path | None) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security=security,
        smtp_ca_file=ca_file,
        smtp_connect_timeout_seconds=5,
    )


async def send(settings: Settings) -> Outcome:
    mailer = Mailer(settings)
    try:
        result = await mailer.send("a@shop.example", "b@example.com", MESSAGE)
    finally:
        await mailer.close()
    return result.outcome


class TestImplicitTls:
    async def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(
        self, implicit_tls: tuple[RecordingHandler, int]
    ) -> None:
        handler, port = implicit_tls
        assert await send(settings_for(port, "tls", None)) is Outcome.transient
        assert handler.messages == []

    async def test_a_trusted_certificate_carries_the_message(
        self, implicit_tls: tuple[RecordingHandler, int], certificate: tuple[Path, Path]
    ) -> None:
        handler, port = implicit_tls
        assert await send(settings_for(port, "tls", certificate[0])) is Outcome.sent
        assert len(handler.messages) == 1


class TestStartTls:
    async def test_starttls_with_a_trusted_certificate_is_used_and_checked(
        self, certificate: tuple[Path, Path]
    ) -> None:
        handler = RecordingHandler()
        server = await start_sink(
            handler, tls_context=server_context(certificate), require_starttls=True
        )
        port = sink_port(server)
        try:
            assert await send(settings_for(port, "starttls", None)) is Outcome.transient
            assert handler.messages == []
            assert await send(settings_for(port, "starttls", certificate[0])) is Outcome.sent
            assert len(handler.messages) == 1
        finally:
            server.close()
