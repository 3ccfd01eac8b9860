"""`/dev/mailbox`: what the dev SMTP sink captured, in the browser (mounted by `dev` only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from markupsafe import escape

from cancelnotify.errors import NotFound
from cancelnotify.mail.sink import RecordingHandler

router = APIRouter(prefix="/dev/mailbox", tags=["dev"], include_in_schema=False)

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cancelnotify dev mailbox</title>
<style>body{{font:15px system-ui,sans-serif;margin:2rem;color:#222}}
table{{border-collapse:collapse;width:100%}}
td,th{{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd}}a{{color:#0b5cad}}</style>
</head><body><h1>Dev mailbox</h1><p>{count} message(s) captured by the built-in SMTP sink.</p>
<table><tr><th>#</th><th>Received</th><th>To</th><th>Subject</th><th></th></tr>{rows}</table></body></html>"""


def _mailbox(request: Request) -> RecordingHandler:
    mailbox: RecordingHandler = request.app.state.mailbox
    return mailbox


@router.get("", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    messages = _mailbox(request).messages
    rows = "".join(
        f"<tr><td>{i}</td><td>{m.received_at:%H:%M:%S}</td><td>{escape(', '.join(m.recipients))}"
        f"</td><td>{escape(str(m.message['Subject']))}</td><td><a href='/dev/mailbox/{i}'>html</a>"
        f" · <a href='/dev/mailbox/{i}.txt'>text</a>"
        f" · <a href='/dev/mailbox/{i}.eml'>eml</a></td></tr>"
        for i, m in reversed(list(enumerate(messages)))
    )
    return HTMLResponse(_PAGE.format(count=len(messages), rows=rows))


def _get(request: Request, index: int) -> bytes:
    messages = _mailbox(request).messages
    if not 0 <= index < len(messages):
        raise NotFound(f"No message {index}")
    return messages[index].data


@router.get("/{index}.eml", response_class=PlainTextResponse)
async def raw(request: Request, index: int) -> PlainTextResponse:
    return PlainTextResponse(_get(request, index), media_type="message/rfc822")


@router.get("/{index}.txt", response_class=PlainTextResponse)
async def text(request: Request, index: int) -> PlainTextResponse:
    _get(request, index)
    return PlainTextResponse(_mailbox(request).messages[index].part("plain"))


@router.get("/{index}", response_class=HTMLResponse)
async def html(request: Request, index: int) -> HTMLResponse:
    _get(request, index)
    # The captured HTML is our own rendering; still, scripts are blocked by the CSP.
    return HTMLResponse(
        _mailbox(request).messages[index].part("html"),
        headers={"Content-Security-Policy": "script-src 'none'; object-src 'none'"},
    )
