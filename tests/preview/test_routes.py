"""/preview over HTTP: access rules, pages, pasted events, downloads, test sends, live reload."""

from __future__ import annotations

import email
import html
import json
import os
from collections.abc import AsyncIterator, Callable
from email.policy import default
from pathlib import Path

import httpx
import pytest

from cancelnotify.mail.render import REASON_COPY, Renderer
from cancelnotify.preview.scenarios import SCENARIOS
from cancelnotify.schemas.event import Reason
from cancelnotify.settings import Settings
from tests.conftest import ADMIN_KEY, READ_KEY, Sink, running_client
from tests.preview.conftest import write

MakeSettings = Callable[..., Settings]
FORM = {"content-type": "application/x-www-form-urlencoded"}
HTML = {"accept": "text/html"}


def german_reason(settings: Settings) -> str:
    return Renderer(settings).translations("de").gettext(REASON_COPY[Reason.out_of_stock])


@pytest.fixture
async def dev(make_settings: MakeSettings, sink: Sink) -> AsyncIterator[httpx.AsyncClient]:
    """`cancelnotify dev`: preview on, no key, the SMTP sink attached as the dev mailbox."""
    settings = make_settings(preview_enabled=True, dispatcher_enabled=False)
    async with running_client(settings, mailbox=sink.handler) as client:
        yield client


@pytest.fixture
async def serve(make_settings: MakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    """`cancelnotify serve` with PREVIEW_ENABLED: behind an API key."""
    settings = make_settings(preview_enabled=True, dispatcher_enabled=False)
    async with running_client(settings) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class TestAccess:
    async def test_disabled_in_serve_is_a_404_problem(self, make_settings: MakeSettings) -> None:
        async with running_client(make_settings()) as client:
            for path in ("/preview", "/preview/view", "/preview/login"):
                response = await client.get(path, headers=bearer(ADMIN_KEY))
                assert response.status_code == 404
                assert response.headers["content-type"] == "application/problem+json"

    async def test_enabled_in_serve_needs_a_key(self, serve: httpx.AsyncClient) -> None:
        response = await serve.get("/preview")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert (await serve.get("/preview", headers=bearer("nope"))).status_code == 401
        ok = await serve.get("/preview", headers=bearer(READ_KEY))
        assert ok.status_code == 200
        assert "out_of_stock" in ok.text

    async def test_browser_without_key_gets_the_sign_in_form(
        self, serve: httpx.AsyncClient
    ) -> None:
        response = await serve.get("/preview/view", headers=HTML)
        assert response.status_code == 401
        assert '<form method="post" action="/preview/login">' in response.text

    async def test_sign_in_sets_a_strict_httponly_cookie(self, serve: httpx.AsyncClient) -> None:
        bad = await serve.post("/preview/login", content="key=wrong", headers=FORM)
        assert bad.status_code == 401
        assert "Unknown or revoked API key" in bad.text
        assert "set-cookie" not in bad.headers
        response = await serve.post("/preview/login", content=f"key={READ_KEY}", headers=FORM)
        assert response.status_code == 303
        assert response.headers["location"] == "/preview"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/preview" in cookie
        assert READ_KEY not in response.headers["location"]
        assert (await serve.get("/preview/view")).status_code == 200  # the client kept the cookie
        out = await serve.post("/preview/logout")
        assert out.status_code == 303
        assert (await serve.get("/preview/view")).status_code == 401

    async def test_dev_is_open(self, dev: httpx.AsyncClient) -> None:
        assert (await dev.get("/preview")).status_code == 200


class TestPreviewPage:
    async def test_strict_csp_and_sandboxed_iframe(self, dev: httpx.AsyncClient) -> None:
        response = await dev.get("/preview/view?scenario=out_of_stock&locale=de")
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        for directive in (
            "default-src 'none'",
            "img-src https: data:",
            "frame-src 'self'",
            "form-action 'self'",
        ):
            assert directive in csp
        assert "script-src" not in csp  # falls back to default-src 'none'
        assert "'unsafe-inline'" not in csp.split("style-src-attr")[0]
        assert response.text.count('sandbox="allow-popups allow-popups-to-escape-sandbox"') == 2
        assert "allow-scripts" not in response.text
        assert "<script" not in response.text

    async def test_german_out_of_stock(
        self, dev: httpx.AsyncClient, make_settings: MakeSettings
    ) -> None:
        response = await dev.get(
            "/preview/view?template=order_cancelled&scenario=out_of_stock&locale=de"
        )
        page = response.text
        reason = german_reason(make_settings())
        srcdoc = page.split('srcdoc="', 1)[1].split('"', 1)[0]
        assert html.escape(reason, quote=True) in srcdoc or reason in html.unescape(srcdoc)
        assert "Ihre Bestellung #1001 wurde storniert" in page
        assert "Content-Language" in page
        assert "evt_preview_out_of_stock" in page  # the data used
        assert "reason_text" in page  # the template variables

    async def test_unknown_choices_are_404(self, dev: httpx.AsyncClient) -> None:
        for query in ("scenario=nope", "template=nope", "locale=xx"):
            response = await dev.get(f"/preview/view?{query}")
            assert response.status_code == 404, query
            assert response.headers["content-type"] == "application/problem+json"


class TestCustomData:
    async def test_broken_event_shows_the_field_error(self, dev: httpx.AsyncClient) -> None:
        data = SCENARIOS["out_of_stock"].data | {}
        data = json.loads(json.dumps(data))
        data["customer"]["email"] = "not-an-email"
        del data["order"]["currency"]
        response = await dev.post(
            "/preview/custom",
            content=httpx.QueryParams(
                {"template": "order_cancelled", "event": json.dumps(data)}
            ).__str__(),
            headers=FORM,
        )
        assert response.status_code == 200
        page = response.text
        assert '<div class="field-error" data-field="customer.email">' in page
        assert "<code>customer.email</code>: value is not a valid email address" in page
        assert 'data-field="order.currency"' in page
        # Next to the field: the error follows the line that holds the bad value.
        line = page.index("&#34;email&#34;: &#34;not-an-email&#34;")
        assert line < page.index('data-field="customer.email"') < line + 300
        assert "Traceback" not in page

    async def test_invalid_json(self, dev: httpx.AsyncClient) -> None:
        body = str(httpx.QueryParams({"event": '{"event_id": '}))
        response = await dev.post("/preview/custom", content=body, headers=FORM)
        assert response.status_code == 200
        assert "Not valid JSON: Expecting value (line 1, col 14)" in response.text

    async def test_valid_event_renders(self, dev: httpx.AsyncClient) -> None:
        data = json.loads(json.dumps(SCENARIOS["accented"].data))
        body = str(httpx.QueryParams({"event": json.dumps(data), "locale": "fr"}))
        response = await dev.post("/preview/custom", content=body, headers=FORM)
        assert response.status_code == 200
        assert "Zoë" in html.unescape(response.text)
        assert "a été annulée" in html.unescape(response.text)


class TestDownloads:
    @pytest.mark.parametrize(
        ("fmt", "media"), [("html", "text/html"), ("txt", "text/plain"), ("eml", "message/rfc822")]
    )
    async def test_scenario(self, dev: httpx.AsyncClient, fmt: str, media: str) -> None:
        response = await dev.get(f"/preview/download.{fmt}?scenario=refund_paypal&locale=nl")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        assert response.headers["content-disposition"] == (
            f'attachment; filename="order_cancelled-refund_paypal-nl.{fmt}"'
        )
        assert "sandbox" in response.headers["content-security-policy"]
        if fmt == "eml":
            message = email.message_from_bytes(response.content, policy=default)
            assert message["Content-Language"] == "nl"
            assert message.get_body(("plain",)) is not None

    async def test_custom_event(self, dev: httpx.AsyncClient) -> None:
        body = str(
            httpx.QueryParams({"event": json.dumps(SCENARIOS["other"].data), "locale": "it"})
        )
        response = await dev.post("/preview/download.txt", content=body, headers=FORM)
        assert response.status_code == 200
        assert 'filename="order_cancelled-custom-it.txt"' in response.headers["content-disposition"]


class TestSendTestEmail:
    async def test_dev_sends_to_the_dev_sink(self, dev: httpx.AsyncClient, sink: Sink) -> None:
        body = str(
            httpx.QueryParams({"scenario": "out_of_stock", "locale": "de", "to": "qa@example.com"})
        )
        response = await dev.post("/preview/send", content=body, headers=FORM)
        assert response.status_code == 200
        assert "Sent to qa@example.com through the dev mailbox" in response.text
        await sink.wait_for(1)
        message = sink.messages[0]
        assert message.recipients == ["qa@example.com"]
        assert str(message.message["Subject"]) == "Ihre Bestellung #1001 wurde storniert"
        assert message.message["X-Cancelnotify-Preview"] == "test email"

    async def test_serve_needs_an_admin_key(self, serve: httpx.AsyncClient, sink: Sink) -> None:
        body = str(httpx.QueryParams({"scenario": "other", "to": "qa@example.com"}))
        response = await serve.post("/preview/send", content=body, headers=FORM | bearer(READ_KEY))
        assert "needs an admin API key" in response.text
        response = await serve.post("/preview/send", content=body, headers=FORM | bearer(ADMIN_KEY))
        assert "Sent to qa@example.com through the SMTP relay" in response.text
        await sink.wait_for(1)
        assert len(sink.messages) == 1

    async def test_bad_address(self, dev: httpx.AsyncClient) -> None:
        body = str(httpx.QueryParams({"scenario": "other", "to": "qa@@example"}))
        response = await dev.post("/preview/send", content=body, headers=FORM)
        assert "is not an email address" in html.unescape(response.text)


class TestLiveReload:
    async def test_dev_shows_template_edits_without_restart(
        self, make_settings: MakeSettings, sink: Sink, tmp_path: Path
    ) -> None:
        page = write(
            tmp_path, "email/order_cancelled.html", "<html><body><p>First draft</p></body></html>"
        )
        settings = make_settings(
            preview_enabled=True, dispatcher_enabled=False, templates_dir=tmp_path
        )
        async with running_client(settings, mailbox=sink.handler) as client:
            assert "First draft" in (await client.get("/preview/view")).text
            page.write_text("<html><body><p>Second draft</p></body></html>", encoding="utf-8")
            stat = page.stat()
            os.utime(page, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            text = (await client.get("/preview/view")).text
            assert "Second draft" in text
            assert "First draft" not in text

    async def test_serve_renders_what_it_started_with(
        self, make_settings: MakeSettings, tmp_path: Path
    ) -> None:
        page = write(
            tmp_path, "email/order_cancelled.html", "<html><body><p>First draft</p></body></html>"
        )
        settings = make_settings(
            preview_enabled=True, dispatcher_enabled=False, templates_dir=tmp_path
        )
        async with running_client(settings) as client:
            assert (
                "First draft" in (await client.get("/preview/view", headers=bearer(READ_KEY))).text
            )
            page.write_text("<html><body><p>Second draft</p></body></html>", encoding="utf-8")
            assert (
                "First draft" in (await client.get("/preview/view", headers=bearer(READ_KEY))).text
            )
