"""Customer-facing routes (no login; signed links): status page, feedback, open pixel, clicks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from cancelnotify.api.deps import ClockDep, SessionDep, SettingsDep
from cancelnotify.mail.render import Renderer
from cancelnotify.schemas.problem import problem_responses
from cancelnotify.services import engagement
from cancelnotify.services import status as status_service
from cancelnotify.status.pages import PIXEL, Pages

router = APIRouter(tags=["customer"])
Token = Annotated[str, Path(min_length=16, max_length=3000, pattern=r"^[A-Za-z0-9_-]+$")]


async def get_renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.renderer
    return renderer


async def get_pages(request: Request) -> Pages:
    pages: Pages | None = getattr(request.app.state, "pages", None)
    if pages is None:  # built on first use, like the preview workbench
        pages = request.app.state.pages = Pages(request.app.state.settings)
    return pages


RendererDep = Annotated[Renderer, Depends(get_renderer)]
PagesDep = Annotated[Pages, Depends(get_pages)]


@router.get(
    "/status/{token}",
    response_class=HTMLResponse,
    summary="The customer's cancellation status page (signed link from the email)",
    responses=problem_responses(404, 422, 503),
)
async def status_page(
    token: Token,
    session: SessionDep,
    settings: SettingsDep,
    renderer: RendererDep,
    pages: PagesDep,
    accept_language: Annotated[str | None, Header(max_length=500)] = None,
) -> HTMLResponse:
    view = await status_service.view(
        session, token, settings=settings, renderer=renderer, accept_language=accept_language
    )
    return pages.status(view, renderer)


@router.get(
    "/feedback/{token}",
    response_class=HTMLResponse,
    summary="Record a 'was this email helpful?' answer once per email; a thank-you page",
    responses=problem_responses(404, 422, 503),
)
async def feedback(
    token: Token,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    renderer: RendererDep,
    pages: PagesDep,
) -> HTMLResponse:
    outcome = await engagement.record_feedback(session, token, settings=settings, now=clock())
    lang = status_service.pick_language(outcome.locale, None, renderer.locales())
    return pages.thanks(outcome.answer, renderer, lang)


@router.get(
    "/o/{token}.gif",
    summary="Open pixel (TRACKING_ENABLED only): counts the first open of an email",
    responses={200: {"content": {"image/gif": {}}}, **problem_responses(404, 422, 503)},
)
async def open_pixel(
    token: Token, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> Response:
    await engagement.record_open(session, token, settings=settings, now=clock())
    return Response(PIXEL, media_type="image/gif", headers={"cache-control": "no-store"})


@router.get(
    "/c/{token}",
    status_code=status.HTTP_302_FOUND,
    summary="Tracked link: redirects to the signed target only (no open redirect)",
    responses=problem_responses(404, 422, 503),
)
async def click(
    token: Token, session: SessionDep, settings: SettingsDep, clock: ClockDep
) -> RedirectResponse:
    target = await engagement.follow_click(session, token, settings=settings, now=clock())
    return RedirectResponse(target, status_code=302, headers={"referrer-policy": "no-referrer"})
