"""The cancellation email: rendering (templates, locales) and building the MIME message."""

from cancelnotify.mail.message import build_message, make_message_id, render_to_format
from cancelnotify.mail.render import RenderedEmail, Renderer, default_templates_dir

__all__ = [
    "RenderedEmail",
    "Renderer",
    "build_message",
    "default_templates_dir",
    "make_message_id",
    "render_to_format",
]
