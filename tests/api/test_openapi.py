"""/openapi.json is accurate: a bounded schemathesis run against the live app finds nothing.

The app runs for real (uvicorn on a loopback port, its lifespan, dispatcher, database and SMTP
sink); schemathesis's CLI generates requests from the schema, with an admin key so the ops
routes are reached, and checks that no response is a 500 or breaks the documented schema,
status codes, content types or headers.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from cancelnotify.app import create_app
from cancelnotify.settings import Settings
from tests.api.ops import post_event, wait_status
from tests.conftest import ADMIN_KEY
from tests.pgserver import free_port

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = os.environ.get("CANCELNOTIFY_SCHEMATHESIS_CHECKS", "all")
# Answers that depend on stored data, which no schema can say: a made-up opaque `cursor` (of
# notifications and call-backs) is answered 422 naming the field; a refund event for a
# cancellation that carried no refund must name its method (422); an Idempotency-Key already
# used for a different request is a 409 (resend, refund events).
CONFIG = """
[[operations]]
include-path = "/v1/notifications"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]

[[operations]]
include-path-regex = "/(refund-events|resend)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-path = "/v1/callbacks"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "422"]
"""


class LiveServer:
    """The app under uvicorn on the running loop, so the test can talk to it over TCP."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_config=None, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task


class TestOpenApi:
    async def test_every_route_documents_its_problems(self, client: httpx.AsyncClient) -> None:
        schema = (await client.get("/openapi.json")).json()
        for path, item in schema["paths"].items():
            for method, op in item.items():
                codes = set(op["responses"])
                if path.startswith("/v1/") and not path.startswith("/v1/webhooks/"):
                    assert {"401", "422", "503"} <= codes, (method, path)
                    assert op["security"] == [{"HTTPBearer": []}], (method, path)
                for code, response in op["responses"].items():
                    if (code.startswith(("4", "5")) and code != "503") or (
                        code == "503" and path.startswith("/v1/")
                    ):
                        assert "application/problem+json" in response["content"], (
                            method,
                            path,
                            code,
                        )

    async def test_schemathesis_finds_no_server_error_or_schema_violation(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        # Every source configured, as in production; an unconfigured one answers 503 on purpose.
        settings = settings.model_copy(
            update={
                "shopify_webhook_secret": SecretStr("shpss_schemathesis"),
                "woocommerce_webhook_secret": SecretStr("woo_schemathesis"),
            }
        )
        async with LiveServer(settings) as live:
            async with httpx.AsyncClient(base_url=live.url) as http:
                # Some real rows so list and detail responses have content to check.
                made = await post_event(http, order_id="1001")
                await wait_status(http, made["notification_id"], "sent")
            (tmp_path / "schemathesis.toml").write_text(CONFIG)
            proc = await asyncio.create_subprocess_exec(
                str(SCHEMATHESIS),
                "--config-file",
                str(tmp_path / "schemathesis.toml"),
                "run",
                f"{live.url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "30",
                # One worker: hypothesis describes filter lambdas with ast.parse, which is not
                # thread-safe on CPython 3.11.7 ("AST constructor recursion depth mismatch").
                "--workers",
                "1",
                "--header",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--generation-database",
                "none",
                "--seed",
                "6",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                cwd=tmp_path,
                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 110)
        report = out.decode(errors="replace")
        print(report)  # noqa: T201 - the run's summary, shown with -s or on failure
        assert proc.returncode == 0, report[-6000:]
