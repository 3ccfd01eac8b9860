"""Signed, unguessable tokens for the links an email carries (feedback answers, status page).

A token is ``base64url(body || tag)`` without padding, where ``body`` is the notification id
(16 bytes) followed, for feedback, by one answer byte (``y``/``n``), and ``tag`` is the first
16 bytes of ``HMAC-SHA256(settings.signing_key(), purpose || body)``. The purpose string
separates the kinds of token, so a status token never verifies as a feedback token and the answer
cannot be flipped without the key. Tokens hold no personal data and do not expire: the customer may
come back to the status page weeks later.

URL shapes (served by the feedback/status routes):

* ``{public_base_url}/feedback/{token}`` - one token per answer, so a single click records it;
* ``{public_base_url}/status/{token}`` - the cancellation status page of that notification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from cancelnotify.settings import Settings

FeedbackAnswer = Literal["yes", "no"]

_TAG_BYTES: Final = 16
_ID_BYTES: Final = 16
_FEEDBACK_PURPOSE: Final = b"cancelnotify/feedback/v1\x00"
_STATUS_PURPOSE: Final = b"cancelnotify/status/v1\x00"
_ANSWER_BYTES: Final[dict[FeedbackAnswer, bytes]] = {"yes": b"y", "no": b"n"}
_ANSWERS: Final[dict[bytes, FeedbackAnswer]] = {v: k for k, v in _ANSWER_BYTES.items()}


class InvalidLinkTokenError(ValueError):
    """The token was not made with our key for this purpose (tampered, truncated or foreign)."""


@dataclass(frozen=True, slots=True)
class FeedbackVote:
    """What a verified feedback token says: which notification, which answer."""

    notification_id: uuid.UUID
    answer: FeedbackAnswer


def _tag(key: bytes, purpose: bytes, body: bytes) -> bytes:
    return hmac.new(key, purpose + body, hashlib.sha256).digest()[:_TAG_BYTES]


def _encode(key: bytes, purpose: bytes, body: bytes) -> str:
    return base64.urlsafe_b64encode(body + _tag(key, purpose, body)).rstrip(b"=").decode("ascii")


def _decode(token: str, key: bytes, purpose: bytes, body_len: int) -> bytes:
    if len(token) > 64 or not token.isascii():
        raise InvalidLinkTokenError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidLinkTokenError("malformed token") from exc
    if len(raw) != body_len + _TAG_BYTES:
        raise InvalidLinkTokenError("malformed token")
    body, tag = raw[:body_len], raw[body_len:]
    if not hmac.compare_digest(tag, _tag(key, purpose, body)):
        raise InvalidLinkTokenError("bad signature")
    return body


def make_feedback_token(notification_id: uuid.UUID, answer: FeedbackAnswer, key: bytes) -> str:
    """A token that records `answer` for `notification_id` when its link is opened."""
    return _encode(key, _FEEDBACK_PURPOSE, notification_id.bytes + _ANSWER_BYTES[answer])


def verify_feedback_token(token: str, key: bytes) -> FeedbackVote:
    """The vote a feedback token carries; raises InvalidLinkTokenError if it is not ours."""
    body = _decode(token, key, _FEEDBACK_PURPOSE, _ID_BYTES + 1)
    answer = _ANSWERS.get(body[_ID_BYTES:])
    if answer is None:  # pragma: no cover - only reachable with our own key
        raise InvalidLinkTokenError("unknown answer")
    return FeedbackVote(uuid.UUID(bytes=body[:_ID_BYTES]), answer)


def make_status_token(notification_id: uuid.UUID, key: bytes) -> str:
    """A token for the status page of `notification_id`."""
    return _encode(key, _STATUS_PURPOSE, notification_id.bytes)


def verify_status_token(token: str, key: bytes) -> uuid.UUID:
    """The notification id a status token names; raises InvalidLinkTokenError if it is not ours."""
    return uuid.UUID(bytes=_decode(token, key, _STATUS_PURPOSE, _ID_BYTES))


def feedback_url(settings: Settings, notification_id: uuid.UUID, answer: FeedbackAnswer) -> str:
    """`{public_base_url}/feedback/{token}` for one answer."""
    token = make_feedback_token(notification_id, answer, settings.signing_key())
    return f"{settings.public_base_url}/feedback/{token}"


def status_url(settings: Settings, notification_id: uuid.UUID) -> str:
    """`{public_base_url}/status/{token}`: the page the customer can come back to."""
    token = make_status_token(notification_id, settings.signing_key())
    return f"{settings.public_base_url}/status/{token}"


# --- tracking (only when TRACKING_ENABLED): an open pixel and signed click redirects ----------
#
# A click token carries its target inside the signed body (``id || label byte || url``), so the
# redirect goes only where an email of ours pointed: no open redirect, nothing to look up.

ClickLabel = Literal["reorder", "alternative"]
_OPEN_PURPOSE: Final = b"cancelnotify/open/v1\x00"
_CLICK_PURPOSE: Final = b"cancelnotify/click/v1\x00"
_LABEL_BYTES: Final[dict[ClickLabel, bytes]] = {"reorder": b"r", "alternative": b"a"}
_LABELS: Final[dict[bytes, ClickLabel]] = {v: k for k, v in _LABEL_BYTES.items()}
_MAX_CLICK_TOKEN: Final = 3000


@dataclass(frozen=True, slots=True)
class Click:
    """What a verified click token says: which notification, which link, where to go."""

    notification_id: uuid.UUID
    label: ClickLabel
    url: str


def make_open_token(notification_id: uuid.UUID, key: bytes) -> str:
    return _encode(key, _OPEN_PURPOSE, notification_id.bytes)


def verify_open_token(token: str, key: bytes) -> uuid.UUID:
    """The notification an open-pixel token names; raises InvalidLinkTokenError if not ours."""
    return uuid.UUID(bytes=_decode(token, key, _OPEN_PURPOSE, _ID_BYTES))


def make_click_token(notification_id: uuid.UUID, label: ClickLabel, url: str, key: bytes) -> str:
    body = notification_id.bytes + _LABEL_BYTES[label] + url.encode("utf-8")
    return _encode(key, _CLICK_PURPOSE, body)


def verify_click_token(token: str, key: bytes) -> Click:
    """The click a token carries; raises InvalidLinkTokenError if tampered or not http(s)."""
    if len(token) > _MAX_CLICK_TOKEN or not token.isascii():
        raise InvalidLinkTokenError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidLinkTokenError("malformed token") from exc
    if len(raw) <= _ID_BYTES + 1 + _TAG_BYTES:
        raise InvalidLinkTokenError("malformed token")
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, _CLICK_PURPOSE, body)):
        raise InvalidLinkTokenError("bad signature")
    label = _LABELS.get(body[_ID_BYTES : _ID_BYTES + 1])
    try:
        url = body[_ID_BYTES + 1 :].decode("utf-8")
    except UnicodeDecodeError as exc:  # pragma: no cover - only reachable with our own key
        raise InvalidLinkTokenError("bad target") from exc
    if label is None or not url.startswith(("https://", "http://")):  # pragma: no cover
        raise InvalidLinkTokenError("bad target")
    return Click(uuid.UUID(bytes=body[:_ID_BYTES]), label, url)


def open_pixel_url(settings: Settings, notification_id: uuid.UUID) -> str | None:
    """`{public_base_url}/o/{token}.gif` when tracking is on, else None."""
    if not settings.tracking_enabled:
        return None
    token = make_open_token(notification_id, settings.signing_key())
    return f"{settings.public_base_url}/o/{token}.gif"


def click_url(
    settings: Settings, notification_id: uuid.UUID, label: ClickLabel, url: str | None
) -> str | None:
    """The tracked redirect for `url` when tracking is on; `url` itself when it is off."""
    if url is None or not settings.tracking_enabled:
        return url
    token = make_click_token(notification_id, label, url, settings.signing_key())
    return f"{settings.public_base_url}/c/{token}"
