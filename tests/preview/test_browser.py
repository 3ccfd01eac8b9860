"""The workbench in headless Chromium (Debian's, driven by Playwright) against a real server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cancelnotify.app import create_app
from cancelnotify.mail.render import REASON_COPY, Renderer
from cancelnotify.mail.sink import RecordingHandler
from cancelnotify.preview.scenarios import SCENARIOS
from cancelnotify.schemas.event import Reason
from cancelnotify.services import apikeys
from cancelnotify.settings import Settings
from tests.pgserver import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="browser tests need Debian's chromium at /usr/bin/chromium"
)


@pytest.fixture(scope="module")
def dev_settings(sqlite_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=sqlite_url,
        preview_enabled=True,
        dispatcher_enabled=False,
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        smtp_security="none",
        public_base_url="http://127.0.0.1:8000",
    )


@contextlib.contextmanager
def _uvicorn(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free loopback port from a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(dev_settings: Settings) -> Iterator[str]:
    """The app as `cancelnotify dev` builds it (the dev mailbox makes it dev)."""
    with _uvicorn(create_app(dev_settings, mailbox=RecordingHandler())) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, java_script_enabled=False
    )
    page = context.new_page()
    yield page
    context.close()


def test_choose_german_and_out_of_stock(server: str, page: Page, dev_settings: Settings) -> None:
    p = page
    violations: list[str] = []
    p.on("console", lambda msg: violations.append(msg.text))
    p.goto(f"{server}/preview")
    p.get_by_role("link", name="out_of_stock", exact=True).first.click()
    p.select_option("select[name=locale]", "de")
    p.get_by_role("button", name="Show").click()
    assert "locale=de" in p.url
    german = Renderer(dev_settings).translations("de").gettext(REASON_COPY[Reason.out_of_stock])
    frame = p.frame_locator("iframe.desktop")
    expect(frame.get_by_text(german)).to_be_visible()
    expect(p.frame_locator("iframe.mobile").get_by_text(german)).to_be_visible()
    # The email's own styles are applied inside the sandbox (allowed by hash, not blocked).
    heading = frame.locator("h1")
    expect(heading).to_have_css("font-size", "24px")
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=str(ARTIFACTS / "preview.png"), full_page=False)
    assert [v for v in violations if "Content Security Policy" in v] == []


def test_paste_a_broken_event_and_see_the_field_error(server: str, page: Page) -> None:
    p = page
    data = json.loads(json.dumps(SCENARIOS["out_of_stock"].data))
    data["customer"]["email"] = "ana-at-example.com"
    p.goto(f"{server}/preview/view?scenario=out_of_stock")
    p.fill("textarea[name=event]", json.dumps(data, indent=2))
    p.get_by_role("button", name="Render this event").click()
    error = p.locator('.field-error[data-field="customer.email"]')
    expect(error).to_contain_text("customer.email: value is not a valid email address")
    # It sits right under the line of the JSON that holds the bad value.
    bad_line = p.locator(".annotated .line.bad")
    expect(bad_line).to_contain_text('"email": "ana-at-example.com"')
    ARTIFACTS.mkdir(exist_ok=True)
    error.scroll_into_view_if_needed()
    p.screenshot(path=str(ARTIFACTS / "preview-field-error.png"))


def test_sign_in_with_an_api_key_in_serve(dev_settings: Settings, browser: Browser) -> None:
    """`serve` with PREVIEW_ENABLED: the browser signs in once; the key never enters a URL."""
    # Playwright's sync API keeps an event loop running here: create the key from a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        key = pool.submit(asyncio.run, apikeys.create(dev_settings, "browser", "read")).result()
    context = browser.new_context(java_script_enabled=False)
    try:
        with _uvicorn(create_app(dev_settings)) as url:
            p = context.new_page()
            response = p.goto(f"{url}/preview")
            assert response is not None
            assert response.status == 401
            p.fill("input[name=key]", key)
            p.get_by_role("button", name="Sign in").click()
            expect(p.get_by_role("heading", name="Templates \u00d7 locales")).to_be_visible()
            assert key not in p.url
            [cookie] = context.cookies()
            assert cookie["httpOnly"]
            assert cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/preview"
    finally:
        context.close()
