"""Command line: dev, serve, migrate, apikey, render, purge, send-sample: parse, build, call."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cancelnotify import __version__
from cancelnotify.settings import Settings, SettingsError, load_settings

DEV_SECRET = "whsec_" + base64.b64encode(b"cancelnotify-dev-secret-0000000").decode()
DEV_API_KEY = "cn_dev_admin_0000000000000000"
DEV_DB = ".dev/cancelnotify.db"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cancelnotify", description=__doc__)
    p.add_argument("--version", action="version", version=f"cancelnotify {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="zero set-up: SQLite, SMTP sink, preview, demo secret and key")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--host", default="127.0.0.1")

    serve = sub.add_parser("serve", help="production server (PostgreSQL, real SMTP)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)

    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")

    apikey = sub.add_parser("apikey", help="manage ops API keys")
    ak = apikey.add_subparsers(dest="action", required=True)
    create = ak.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", choices=["read", "admin"], default="read")
    ak.add_parser("list", help="list keys (never the secret)")
    revoke = ak.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key")

    render = sub.add_parser("render", help="render an event file without sending")
    render.add_argument("--payload", type=Path, required=True)
    render.add_argument("--locale", default=None)
    render.add_argument("--format", choices=["html", "text", "eml"], default="text")

    sub.add_parser("config", help="print every setting with its default (Markdown)")

    purge = sub.add_parser("purge", help="data retention: clear personal data past a horizon")
    purge.add_argument("--older-than", required=True, help="e.g. 90d, 12h, 30m")

    sample = sub.add_parser("send-sample", help="POST a freshly signed sample webhook")
    sample.add_argument("--url", default="http://127.0.0.1:8000")
    sample.add_argument("--reason", default="out_of_stock")
    sample.add_argument("--locale", default="es-ES")
    sample.add_argument("--email", default="ana@example.com")
    sample.add_argument("--order-id", default=None, help="default: a new order each time")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "dev":
            return _dev(args)
        if args.command == "config":
            from cancelnotify.settings import settings_markdown

            _out(settings_markdown())
            return 0
        settings = load_settings()
        handlers = {
            "serve": _serve,
            "migrate": _migrate,
            "apikey": _apikey,
            "render": _render,
            "send-sample": _send_sample,
            "purge": _purge,
        }
        return handlers[args.command](args, settings)
    except SettingsError as exc:
        print(f"cancelnotify: {exc}", file=sys.stderr)  # noqa: T201
        return 2


def _out(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - the CLI's output


# --- migrate / serve -------------------------------------------------------------------
def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from cancelnotify.db import run_migrations

    run_migrations(settings.database_url)
    _out("database is at the latest migration")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from cancelnotify.app import create_app
    from cancelnotify.logging import configure_logging

    configure_logging(settings.log_level)
    if not settings.webhook_keys():
        print(  # noqa: T201
            "cancelnotify: warning: CANCELNOTIFY_WEBHOOK_SECRET is not set; the canonical "
            "webhook answers 503",
            file=sys.stderr,
        )
    uvicorn.run(
        create_app(settings, own_process=True),
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
    )
    return 0


# --- dev --------------------------------------------------------------------------------
def _dev(args: argparse.Namespace) -> int:
    import os

    from cancelnotify.db import run_migrations

    defaults: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{DEV_DB}",
        "webhook_secret": DEV_SECRET,
        "preview_enabled": True,
    }
    for key in list(defaults):
        if f"CANCELNOTIFY_{key.upper()}" in os.environ:
            del defaults[key]
    base = load_settings(**defaults)
    run_migrations(base.database_url)
    asyncio.run(_dev_async(args, base))
    return 0


async def _dev_async(args: argparse.Namespace, base: Settings) -> None:
    import uvicorn

    from cancelnotify.app import create_app
    from cancelnotify.logging import configure_logging
    from cancelnotify.mail.sink import RecordingHandler, sink_port, start_sink

    configure_logging(base.log_level)
    mailbox = RecordingHandler(limit=500)
    server = await start_sink(mailbox)
    settings = base.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink_port(server),
            "smtp_security": "none",
            "smtp_username": None,
            "smtp_password": None,
            "public_base_url": f"http://{args.host}:{args.port}",
            "retry_base_seconds": min(base.retry_base_seconds, 2.0),
        }
    )
    from cancelnotify.services import apikeys

    await apikeys.ensure(settings, DEV_API_KEY, "dev", "admin")
    url = f"http://{args.host}:{args.port}"
    secret = (
        settings.webhook_secret.get_secret_value().split()[0] if settings.webhook_secret else ""
    )
    _out(f"cancelnotify dev {__version__}")
    _out(f"  API            {url}   (docs: {url}/docs)")
    _out(f"  dev mailbox    {url}/dev/mailbox   (SMTP sink on 127.0.0.1:{settings.smtp_port})")
    _out(f"  preview        {url}/preview")
    _out(f"  database       {settings.database_url}")
    _out(f"  webhook secret {secret}")
    _out(f"  admin API key  {DEV_API_KEY}")
    _out("")
    _out("Send a signed sample webhook (fresh signature each time):")
    _out(f"  cancelnotify send-sample --url {url}")
    _out("or paste this curl within 5 minutes:")
    _out(sample_curl(url, secret))
    config = uvicorn.Config(
        create_app(settings, mailbox=mailbox, own_process=True),
        host=args.host,
        port=args.port,
        log_config=None,
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        server.close()


def sample_curl(url: str, secret: str, **changes: Any) -> str:
    """A ready-to-paste curl of a signed sample event (valid for the 5-minute tolerance)."""
    from cancelnotify.samples import sample_event
    from cancelnotify.settings import decode_whsec
    from cancelnotify.signatures import sign

    body = json.dumps(sample_event(**changes), ensure_ascii=False, separators=(",", ":"))
    msg_id = f"msg_{uuid.uuid4().hex[:20]}"
    ts = int(time.time())
    sig = sign(decode_whsec(secret), msg_id, ts, body.encode())
    quoted = body.replace("'", "'\\''")
    return (
        f"  curl -sS -X POST {url}/v1/webhooks/order-cancelled \\\n"
        f"    -H 'content-type: application/json' -H 'webhook-id: {msg_id}' \\\n"
        f"    -H 'webhook-timestamp: {ts}' -H 'webhook-signature: {sig}' \\\n"
        f"    --data-binary '{quoted}'"
    )


def _send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from cancelnotify.samples import sample_event
    from cancelnotify.signatures import sign

    keys = settings.webhook_keys() or [base64.b64decode(DEV_SECRET.removeprefix("whsec_"))]
    body = json.dumps(
        sample_event(
            reason=args.reason,
            locale=args.locale,
            email=args.email,
            order_id=args.order_id or str(secrets.randbelow(10**6) + 10**6),
        )
    ).encode()
    msg_id = f"msg_{uuid.uuid4().hex[:20]}"
    ts = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own service
        args.url.rstrip("/") + "/v1/webhooks/order-cancelled",
        data=body,
        method="POST",
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(keys[0], msg_id, ts, body),
        },
    )

    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            _out(f"{response.status} {response.read().decode()}")
    except urllib.error.HTTPError as exc:
        _out(f"{exc.code} {exc.read().decode()}")
        return 1
    return 0


# --- apikey -----------------------------------------------------------------------------
def _apikey(args: argparse.Namespace, settings: Settings) -> int:
    from cancelnotify.services import apikeys

    if args.action == "create":
        key = asyncio.run(apikeys.create(settings, args.name, args.scope))
        _out(key)
        print("store it now: it is not shown again", file=sys.stderr)  # noqa: T201
        return 0
    if args.action == "list":
        for row in asyncio.run(apikeys.list_keys(settings)):
            _out("\t".join(row))
        return 0
    if asyncio.run(apikeys.revoke(settings, args.key)):
        _out("revoked")
        return 0
    print(f"cancelnotify: no active key {args.key}", file=sys.stderr)  # noqa: T201
    return 1


# --- render -----------------------------------------------------------------------------
def _render(args: argparse.Namespace, settings: Settings) -> int:
    from cancelnotify.mail.message import render_to_format
    from cancelnotify.mail.render import Renderer
    from cancelnotify.schemas.event import CancellationEventV1

    event = CancellationEventV1.model_validate_json(args.payload.read_bytes())
    sys.stdout.write(
        render_to_format(Renderer(settings), event, args.format, settings, args.locale)
    )
    sys.stdout.write("\n")
    return 0


# --- purge ------------------------------------------------------------------------------
def _purge(args: argparse.Namespace, settings: Settings) -> int:
    from cancelnotify.clock import utcnow
    from cancelnotify.services.retention import parse_horizon, run_purge

    try:
        horizon = parse_horizon(args.older_than)
    except ValueError as exc:
        print(f"cancelnotify: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    counts = asyncio.run(run_purge(settings, older_than=horizon, now=utcnow()))
    _out(" ".join(f"{name}={count}" for name, count in counts.items()))
    return 0
