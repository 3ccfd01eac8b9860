"""`/preview`: the template workbench pages, downloads, test sends and the key sign-in.

Mounted only when PREVIEW_ENABLED (otherwise every /preview URL is a 404 problem). How the app
knows it is `cancelnotify dev`: the dev SMTP sink is passed to `create_app(mailbox=...)`, which
`serve` never does. In dev the workbench is open and live; otherwise every route but the sign-in
needs an API key, as `Authorization: Bearer <key>` or the HttpOnly cookie set by the sign-in form.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from cancelnotify import repository
from cancelnotify.api.deps import RawBodyDep, SessionDep
from cancelnotify.errors import NotFound, Unauthorized, UnsupportedMediaType, problem
from cancelnotify.preview.pages import (
    RAW_HTML_CSP,
    SECURITY_HEADERS,
    STATIC_DIR,
    Pages,
    page_csp,
    style_hashes,
)
from cancelnotify.preview.scenarios import DEFAULT_SCENARIO
from cancelnotify.preview.service import (
    DEFAULT_TEMPLATE,
    ParsedEvent,
    Preview,
    RendererSource,
    Workbench,
    event_json,
    parse_event,
)
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.services.apikeys import hash_key
from cancelnotify.states import Outcome

COOKIE = "cancelnotify_preview"
router = APIRouter(prefix="/preview", tags=["preview"], include_in_schema=False)


class LoginRequired(Unauthorized):
    """Sign in with an API key to use the preview"""


@dataclass(frozen=True, slots=True)
class Access:
    dev: bool
    admin: bool


@dataclass(frozen=True, slots=True)
class State:
    workbench: Workbench
    pages: Pages


def install(app: FastAPI) -> None:
    """Mount the workbench (called by create_app when PREVIEW_ENABLED)."""
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _login_required)


def _is_dev(request: Request) -> bool:
    return request.app.state.mailbox is not None


def _state(request: Request) -> State:
    state: State | None = getattr(request.app.state, "preview", None)
    if state is None:  # built on first use: the renderer only exists once the lifespan ran
        settings = request.app.state.settings
        source = RendererSource(settings, request.app.state.renderer, live=_is_dev(request))
        state = request.app.state.preview = State(Workbench(settings, source), Pages())
    return state


async def get_state(request: Request) -> State:
    return _state(request)


async def get_access(request: Request, session: SessionDep) -> Access:
    if _is_dev(request):
        return Access(dev=True, admin=True)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
    if not key:
        raise LoginRequired(
            "Send Authorization: Bearer <api key>, or sign in at /preview/login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    found = await repository.find_api_key(session, hash_key(key))
    if found is None:
        raise LoginRequired("Unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return Access(dev=False, admin=found.scope == "admin")


StateDep = Annotated[State, Depends(get_state)]
AccessDep = Annotated[Access, Depends(get_access)]
Format = Literal["html", "txt", "eml"]


def _form(request: Request, body: bytes) -> dict[str, str]:
    """An HTML form post (urlencoded; the workbench sends no files)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Send an application/x-www-form-urlencoded form")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _html(content: str, *, csp: str | None = None, status: int = 200) -> HTMLResponse:
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp or page_csp()}
    return HTMLResponse(content, status_code=status, headers=headers)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)  # noqa: S101
    if "text/html" in request.headers.get("accept", ""):
        pages = _state(request).pages
        error = exc.detail if request.headers.get("authorization") else None
        page = pages.render("login.html", dev=False, error=error)
        return _html(page, status=401)
    return _problem(request, exc)


def _problem(request: Request, exc: Unauthorized) -> JSONResponse:
    return problem(
        exc.status, exc.type, exc.title, exc.detail, instance=request.url.path, headers=exc.headers
    )


# --- pages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    ok: bool
    text: str


def _view_page(
    state: State,
    access: Access,
    *,
    template: str,
    locale: str | None,
    scenario: str | None,
    preview: Preview | None,
    event_text: str,
    parsed: ParsedEvent | None = None,
    notice: Notice | None = None,
    customer_locale: str = "",
) -> HTMLResponse:
    wb = state.workbench
    query = urlencode({"template": template, "scenario": scenario or "", "locale": locale or ""})
    page = state.pages.render(
        "view.html",
        dev=access.dev,
        templates=wb.templates(),
        scenarios=wb.scenarios(),
        locales=wb.locales(),
        template=template,
        scenario=scenario,
        locale=locale or "",
        shown_locale=preview.locale if preview else (locale or "customer locale"),
        customer_locale=customer_locale or "",
        preview=preview,
        parsed=parsed,
        event_text=event_text,
        data_json=event_json(preview.event) if preview else "",
        query=query,
        notice=notice,
    )
    hashes = style_hashes(preview.rendered.html) if preview and preview.rendered else []
    return _html(page, csp=page_csp(hashes))


@router.get("", response_class=HTMLResponse)
async def index(state: StateDep, access: AccessDep) -> HTMLResponse:
    wb = state.workbench
    page = state.pages.render(
        "index.html",
        dev=access.dev,
        templates=wb.templates(),
        locales=wb.locales(),
        scenarios=wb.scenarios(),
        default_scenario=DEFAULT_SCENARIO,
    )
    return _html(page)


async def _scenario_preview(
    state: State, template: str, scenario: str, locale: str | None
) -> tuple[Preview, CancellationEventV1]:
    event = state.workbench.scenario(scenario).event()
    found = await asyncio.to_thread(
        state.workbench.preview, event, template=template, locale=locale
    )
    return found, event


@router.get("/view", response_class=HTMLResponse)
async def view(
    state: StateDep,
    access: AccessDep,
    template: str = DEFAULT_TEMPLATE,
    scenario: str = DEFAULT_SCENARIO,
    locale: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    found, event = await _scenario_preview(state, template, scenario, locale or None)
    return _view_page(
        state,
        access,
        template=template,
        locale=locale or None,
        scenario=scenario,
        preview=found,
        event_text=event_json(event),
        customer_locale=event.customer.locale or "",
    )


async def _custom(state: State, fields: dict[str, str]) -> tuple[ParsedEvent, Preview | None]:
    parsed = parse_event(fields.get("event", ""))
    if parsed.event is None:
        state.workbench.check_choice(fields.get("template", DEFAULT_TEMPLATE), None)
        return parsed, None
    found = await asyncio.to_thread(
        state.workbench.preview,
        parsed.event,
        template=fields.get("template") or DEFAULT_TEMPLATE,
        locale=fields.get("locale") or None,
    )
    return parsed, found


@router.post("/custom", response_class=HTMLResponse)
async def custom(
    request: Request, body: RawBodyDep, state: StateDep, access: AccessDep
) -> HTMLResponse:
    fields = _form(request, body)
    parsed, found = await _custom(state, fields)
    return _view_page(
        state,
        access,
        template=fields.get("template") or DEFAULT_TEMPLATE,
        locale=fields.get("locale") or None,
        scenario=None,
        preview=found,
        parsed=parsed,
        event_text=fields.get("event", ""),
        customer_locale=(parsed.event.customer.locale or "") if parsed.event else "",
    )


# --- downloads ----------------------------------------------------------------------------------

_MEDIA = {"html": "text/html", "txt": "text/plain", "eml": "message/rfc822"}


def _download(found: Preview, fmt: Format, name: str) -> Response:
    if found.rendered is None or found.eml is None:
        raise NotFound("The email did not render; open the preview page to see why")
    content = {"html": found.rendered.html, "txt": found.rendered.text, "eml": found.eml}[fmt]
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"',
        "Content-Security-Policy": RAW_HTML_CSP,
    }
    return Response(content, media_type=f"{_MEDIA[fmt]}; charset=utf-8", headers=headers)


@router.get("/download.{fmt}")
async def download(
    state: StateDep,
    _access: AccessDep,
    fmt: Format,
    template: str = DEFAULT_TEMPLATE,
    scenario: str = DEFAULT_SCENARIO,
    locale: Annotated[str | None, Query()] = None,
) -> Response:
    found, _ = await _scenario_preview(state, template, scenario, locale or None)
    return _download(found, fmt, f"{template}-{scenario}-{found.locale}")


@router.post("/download.{fmt}")
async def download_custom(
    request: Request, body: RawBodyDep, state: StateDep, _access: AccessDep, fmt: Format
) -> Response:
    _, found = await _custom(state, _form(request, body))
    if found is None:
        raise NotFound("The event does not match the schema; open the preview page to see why")
    return _download(found, fmt, f"{found.template}-custom-{found.locale}")


# --- test email ----------------------------------------------------------------------------------


@router.post("/send", response_class=HTMLResponse)
async def send(
    request: Request, body: RawBodyDep, state: StateDep, access: AccessDep
) -> HTMLResponse:
    fields = _form(request, body)
    template = fields.get("template") or DEFAULT_TEMPLATE
    locale = fields.get("locale") or None
    scenario = fields.get("scenario") or None
    parsed: ParsedEvent | None = None
    if scenario is not None:
        found: Preview | None = (await _scenario_preview(state, template, scenario, locale))[0]
    else:
        parsed, found = await _custom(state, fields)
    notice = await _send_notice(request, state, access, found, fields.get("to", ""))
    return _view_page(
        state,
        access,
        template=template,
        locale=locale,
        scenario=scenario,
        preview=found,
        parsed=parsed,
        event_text=fields.get("event") or (event_json(found.event) if found else ""),
        notice=notice,
        customer_locale=(found.event.customer.locale or "") if found else "",
    )


async def _send_notice(
    request: Request, state: State, access: Access, found: Preview | None, to: str
) -> Notice:
    if not access.admin:
        return Notice(False, "Sending a test email needs an admin API key.")
    if found is None:
        return Notice(False, "The event does not match the schema; nothing was sent.")
    try:
        message = state.workbench.test_message(found, to)
    except ValueError as exc:
        return Notice(False, str(exc))
    result = await state.workbench.send_test(request.app.state.mailer, message)
    if result.outcome is not Outcome.sent:
        return Notice(False, f"The SMTP server did not accept it: {result.code} {result.text}")
    where = "the dev mailbox" if access.dev else "the SMTP relay"
    address = parseaddr(str(message["To"]))[1]
    return Notice(True, f"Sent to {address} through {where} ({message['Message-ID']}).")


# --- sign-in ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, state: StateDep) -> HTMLResponse:
    return _html(state.pages.render("login.html", dev=_is_dev(request), error=None))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, body: RawBodyDep, state: StateDep, session: SessionDep
) -> Response:
    key = _form(request, body).get("key", "").strip()
    if not key or await repository.find_api_key(session, hash_key(key)) is None:
        page = state.pages.render("login.html", dev=False, error="Unknown or revoked API key")
        return _html(page, status=401)
    response = RedirectResponse("/preview", status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/preview",
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/preview/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/preview", httponly=True, samesite="strict")
    return response


@router.get("/static/preview.css")
async def stylesheet() -> FileResponse:
    return FileResponse(STATIC_DIR / "preview.css", media_type="text/css", headers=SECURITY_HEADERS)
