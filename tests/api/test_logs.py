"""Logs follow a notification by request id, and never carry PII, bodies, secrets or signatures.

RELIABILITY.md §3 test 20: capture every log line of a full flow (webhook, send, refusals,
retries, duplicates, a bad signature, ops reads and a resend, an SMTP login failure) as the
JSON the service writes, then scan it.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cancelnotify.logging import JsonFormatter, configure_logging
from cancelnotify.samples import sample_event
from cancelnotify.settings import Settings
from tests.api.ops import ADMIN, READ, WEBHOOK, post_event, wait_status
from tests.conftest import ADMIN_KEY, SECRET, Sink, encode, running_client, signed_headers

NAME = ("Zebulon", "Quixworth")
EMAIL = "zebulon.quixworth@example.org"
SMTP_PASSWORD = "smtp-pa55word-do-not-log"
NOTE = "Backordered at the Quillmere warehouse"
REASON_TEXT = "customer rang support about zebulon.quixworth@example.org"


def person(order_id: str, email: str = EMAIL) -> dict[str, Any]:
    event = sample_event(order_id=order_id, email=email)
    event["customer"]["first_name"], event["customer"]["last_name"] = NAME
    event["cancellation"]["note"] = NOTE
    return event


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything the service logs, formatted as `serve` writes it (INFO, ours at DEBUG)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    ours = logging.getLogger("cancelnotify")
    # aiosmtpd ("mail.log") is the stand-in relay, not part of the service.
    relay = logging.getLogger("mail.log")
    saved = (root.level, ours.level, relay.disabled)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    relay.disabled = True
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
        relay.disabled = saved[2]


def forbidden(settings: Settings) -> dict[str, re.Pattern[str]]:
    secret = SECRET.removeprefix("whsec_")
    return {
        "email address": re.compile(r"[\w.+-]+(@|%40)[\w-]+\.[\w.-]+"),
        "webhook secret": re.compile(re.escape("whsec_") + "|" + re.escape(secret)),
        "signature": re.compile(r"v1,[A-Za-z0-9+/=]{16,}"),
        "smtp password": re.compile(re.escape(SMTP_PASSWORD)),
        "customer name": re.compile("|".join(NAME)),
        # The card's last four digits, but not inside the hex of an id (a UUID may hold "4242").
        "body": re.compile(
            re.escape(NOTE) + r"|Trail shoe|card_last4|(?<![0-9a-f-])4242(?![0-9a-f])"
        ),
        "api key": re.compile(re.escape(ADMIN_KEY)),
        "ops reason": re.compile("rang support"),
    }


class TestLogs:
    async def test_a_full_flow_logs_ids_not_people_or_secrets(
        self,
        make_settings: Callable[..., Settings],
        sink: Sink,
        captured: io.StringIO,
    ) -> None:
        settings = make_settings()
        async with running_client(settings) as client:
            made = await post_event(client, request_id="req-scan-1", **_changes("1001"))
            nid = made["notification_id"]
            await wait_status(client, nid, "sent")
            # A permanent refusal quoting the address, and a deferral that is retried.
            sink.handler.fail("rcpt", f"550 5.1.1 <{EMAIL}>: Recipient address rejected")
            refused = await post_event(client, request_id="req-scan-2", **_changes("1002"))
            await wait_status(client, refused["notification_id"], "failed")
            sink.handler.fail("data", f"451 4.3.0 <{EMAIL}> greylisted, try again")
            retried = await post_event(client, **_changes("1003"))
            await wait_status(client, retried["notification_id"], "sent")
            # A repeat, a bad signature, broken JSON.
            body = encode(person("1001"))
            headers = signed_headers(body)
            assert (await client.post(WEBHOOK, content=body, headers=headers)).status_code in (
                200,
                202,
            )
            assert (await client.post(WEBHOOK, content=body, headers=headers)).status_code == 200
            forged = body.replace(b"Quixworth", b"Quixwerth")
            assert (await client.post(WEBHOOK, content=forged, headers=headers)).status_code == 401
            broken = b'{"customer": {"email": "' + EMAIL.encode() + b'"'
            r = await client.post(WEBHOOK, content=broken, headers=signed_headers(broken))
            assert r.status_code == 400
            # Ops look the customer up and resend.
            await client.get("/v1/notifications", params={"recipient": EMAIL}, headers=READ)
            await client.post(
                f"/v1/notifications/{nid}/resend", json={"reason": REASON_TEXT}, headers=ADMIN
            )
            await client.get("/v1/notifications", headers={"authorization": "Bearer " + EMAIL})
        # A relay that wants a login we cannot give: the credentials must not leak either.
        failing = make_settings(smtp_username="shop", smtp_password=SMTP_PASSWORD)
        async with running_client(failing) as client:
            other = await post_event(client, **_changes("1004"))
            await wait_status(client, other["notification_id"], "retrying", "failed")

        text = captured.getvalue()
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) > 10
        for what, pattern in forbidden(settings).items():
            found = pattern.search(text)
            assert found is None, (
                f"{what} in logs: ...{text[max(0, found.start() - 80) : found.end() + 80]}"
            )

        # One request id follows the first notification from webhook to SMTP.
        trail = [
            line
            for line in lines
            if line.get("notification_id") == nid and line["level"] != "debug"
        ]
        steps = [line["msg"] for line in trail]
        assert steps[:2] == ["cancellation stored", "send result"]
        assert {line.get("request_id") for line in trail[:2]} == {"req-scan-1"}
        result = trail[1]
        assert (result["outcome"], result["smtp_code"], result["status"]) == ("sent", 250, "sent")
        failed = [x for x in lines if x.get("notification_id") == refused["notification_id"]]
        assert failed[-1]["request_id"] == "req-scan-2"
        assert failed[-1]["failure_reason"] == "rejected"
        webhook_lines = [x for x in lines if x.get("msg", "").startswith("webhook ")]
        assert {"accepted", "duplicate", "rejected"} <= {x["outcome"] for x in webhook_lines}
        # At info an accepted webhook is one line, "cancellation stored"; the rest say why.
        levels = {(x["outcome"] == "accepted", x["level"]) for x in webhook_lines}
        assert levels == {(True, "debug"), (False, "info")}

    def test_an_access_log_line_with_an_address_is_redacted(self) -> None:
        record = logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            (
                "127.0.0.1:5000",
                "GET",
                f"/v1/notifications?recipient={EMAIL.replace('@', '%40')}",
                "1.1",
                200,
            ),
            None,
        )
        line = JsonFormatter().format(record)
        assert "zebulon" not in line
        assert "recipient=<email>" in line

    def test_webhooks_log_one_line_of_their_own_and_no_access_line(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
        saved = (root.handlers[:], root.level, access.filters[:])
        switches = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")
        saved_switches = {name: getattr(logging, name) for name in switches}
        try:
            configure_logging("info")
            for path in ("/v1/webhooks/order-cancelled", "/v1/notifications?status=failed"):
                access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", 202)
        finally:
            root.handlers[:], access.filters[:] = saved[0], saved[2]
            root.setLevel(saved[1])
            for name, value in saved_switches.items():
                setattr(logging, name, value)
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [x["msg"] for x in lines] == [
            '127.0.0.1:5000 - "POST /v1/notifications?status=failed HTTP/1.1" 202'
        ]


def _changes(order_id: str) -> dict[str, Any]:
    event = person(order_id)
    return {k: v for k, v in event.items() if k != "event_id"}
