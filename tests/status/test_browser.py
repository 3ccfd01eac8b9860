"""The status page in headless Chromium, opened from the link in the email the sink received."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, expect, sync_playwright

from cancelnotify.app import create_app
from cancelnotify.mail.sink import RecordingHandler, sink_port, start_sink
from cancelnotify.samples import sample_event
from cancelnotify.services import apikeys
from cancelnotify.settings import Settings
from tests.conftest import SECRET, encode, signed_headers, truncate
from tests.pgserver import free_port
from tests.preview.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"
)


@contextlib.contextmanager
def _smtp_sink() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server (aiosmtpd) on its own loop in a thread."""
    handler = RecordingHandler()
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[int] = concurrent.futures.Future()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start_sink(handler))
        started.set_result(sink_port(server))
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield handler, started.result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


@contextlib.contextmanager
def _server(settings: Settings) -> Iterator[None]:
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def test_status_page_from_the_emailed_link(sqlite_url: str, browser: Browser) -> None:
    port = free_port()
    with _smtp_sink() as (mailbox, smtp_port):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=sqlite_url,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_security="none",
            webhook_secret=SECRET,
            support_email="help@shop.example",
            support_phone="+34 910 000 000",
            shop_name="Trail & Co",
            port=port,
            public_base_url=f"http://127.0.0.1:{port}",
            poll_interval_seconds=0.2,
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # The session's SQLite database: rows other tests left due would be sent first.
            pool.submit(asyncio.run, truncate(sqlite_url)).result()
            key = pool.submit(asyncio.run, apikeys.create(settings, "browser", "admin")).result()
        with _server(settings):
            event = sample_event(order_id="88231", locale="es-ES")
            event["order"]["items"].append(
                {"sku": "SK-2", "name": "Merino socks", "quantity": 2, "unit_price": "0.00"}
            )
            body = encode(event)
            base = f"http://127.0.0.1:{port}"
            r = httpx.post(
                f"{base}/v1/webhooks/order-cancelled", content=body, headers=signed_headers(body)
            )
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 10
            while not mailbox.messages:
                assert time.monotonic() < deadline, "no email at the sink"
                time.sleep(0.05)
            r = httpx.post(
                f"{base}/v1/cancellations/{r.json()['cancellation_id']}/refund-events",
                json={"kind": "initiated", "amount": "129.90"},
                headers={"authorization": f"Bearer {key}"},
            )
            assert r.status_code == 201, r.text

            text = mailbox.messages[0].part("plain")
            match = re.search(rf"{re.escape(base)}/status/[A-Za-z0-9_-]+", text)
            assert match, "no status link in the email"
            context = browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                java_script_enabled=False,
                locale="en-US",
            )
            try:
                page = context.new_page()
                violations: list[str] = []
                page.on("console", lambda msg: violations.append(msg.text))
                response = page.goto(match.group(0))
                assert response is not None
                assert response.status == 200
                expect(page.get_by_role("heading", name="Pedido #88231")).to_be_visible()
                expect(page.locator("li.done")).to_have_count(2)
                expect(page.locator("li.current .step-label")).to_have_text("Reembolso completado")
                expect(page.get_by_text("Merino socks")).to_be_visible()
                # The stylesheet is allowed by its hash: the step circles are styled.
                expect(page.locator("main")).to_have_css("max-width", "640px")
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, "the page scrolls sideways on a phone"
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
                assert [v for v in violations if "Content Security Policy" in v] == []
            finally:
                context.close()
