"""Server-rendered customer pages (Jinja2, autoescaped, no JavaScript) and their strict CSP."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, Final

from fastapi.responses import HTMLResponse
from jinja2 import FileSystemLoader
from markupsafe import Markup

from cancelnotify.links import FeedbackAnswer
from cancelnotify.mail.render import Renderer, i18n_environment
from cancelnotify.services.status import StatusView
from cancelnotify.settings import Settings

_HERE: Final = Path(__file__).resolve().parent
# The 1x1 transparent GIF of the open pixel.
PIXEL: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class Pages:
    """Templates and the one stylesheet, loaded once; the CSP allows exactly that stylesheet."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._env = i18n_environment(FileSystemLoader(_HERE / "templates"), escape_all=True)
        css = (_HERE / "templates" / "page.css").read_text(encoding="utf-8")
        self._css = Markup(css)  # noqa: S704 - our own stylesheet, not input
        digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
        self.csp = (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )

    def _response(self, name: str, renderer: Renderer, lang: str, **values: Any) -> HTMLResponse:
        settings = self._settings
        html = self._env.get_template(name).render(
            i18n=renderer.translations(lang),
            lang=lang,
            css=self._css,
            shop_name=settings.shop_name,
            shop_url=settings.shop_url,
            support_email=settings.support_email,
            support_phone=settings.support_phone,
            **values,
        )
        return HTMLResponse(html, headers=self.headers())

    def headers(self) -> dict[str, str]:
        return {
            "content-security-policy": self.csp,
            "cache-control": "no-store",
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
            "x-robots-tag": "noindex, nofollow",
        }

    def status(self, view: StatusView, renderer: Renderer) -> HTMLResponse:
        return self._response("status.html", renderer, view.lang, view=view)

    def thanks(self, answer: FeedbackAnswer, renderer: Renderer, lang: str) -> HTMLResponse:
        return self._response("thanks.html", renderer, lang, answer=answer)
