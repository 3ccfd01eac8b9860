"""Jinja2 rendering of the cancellation email (HTML + text), built once per process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import jinja2

from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    locale: str


def default_templates_dir() -> Path:
    """Templates shipped in the wheel, or the repository's `templates/` in a checkout."""
    packaged = Path(__file__).resolve().parents[1] / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "templates"


class Renderer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        dirs = [default_templates_dir()]
        if settings.templates_dir is not None:
            dirs.insert(0, settings.templates_dir)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self,
        event: CancellationEventV1,
        *,
        notification_id: uuid.UUID,
        reference: str,
        template: str = "order_cancelled",
        locale: str | None = None,
    ) -> RenderedEmail:
        ctx = {
            "event": event,
            "shop": self.settings,
            "reference": reference,
            "notification_id": str(notification_id),
        }
        number = event.order.number or event.order.id
        subject = f"Your order {number} has been cancelled"
        html = self.env.get_template(f"email/{template}.html").render(ctx)
        text = self.env.get_template(f"email/{template}.txt").render(ctx)
        return RenderedEmail(subject=subject, html=html, text=text, locale="en")
