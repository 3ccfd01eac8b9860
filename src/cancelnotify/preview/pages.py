"""The workbench's HTML pages: Jinja2 templates of their own (autoescaped) and their CSP.

Every page forbids scripts outright (`default-src 'none'`), so the workbench works with scripts
off by construction. The email is shown in `<iframe sandbox srcdoc>`; a srcdoc document inherits
the page's policy, so the page allows exactly the email's own `<style>` blocks by hash and inline
`style` attributes (which cannot run code), and nothing else inline.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from cancelnotify.preview.checks import CHECKS

HERE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = HERE / "static"
# The iframe gets no allow-scripts and no allow-same-origin: the email cannot run code or read
# the workbench; links may open in a new tab, outside the sandbox.
IFRAME_SANDBOX: Final = "allow-popups allow-popups-to-escape-sandbox"
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
}
# For a raw email HTML download opened in a browser: styles only, sandboxed, nothing else.
RAW_HTML_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; sandbox; "
    "form-action 'none'; base-uri 'none'"
)


class _StyleCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.blocks: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style":
            self._in_style = True
            self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.blocks[-1] += data


def style_hashes(html: str) -> list[str]:
    """CSP source expressions for each `<style>` block of the email."""
    collector = _StyleCollector()
    collector.feed(html)
    collector.close()
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in dict.fromkeys(collector.blocks)
    ]


def page_csp(style_sources: Iterable[str] = ()) -> str:
    styles = " ".join(["'self'", *style_sources])
    return (
        f"default-src 'none'; style-src {styles}; style-src-attr 'unsafe-inline'; "
        "img-src https: data:; frame-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'self'"
    )


class Pages:
    """Renders the workbench pages; built once per app."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals.update(checks=CHECKS, sandbox=IFRAME_SANDBOX)

    def render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(**context)
