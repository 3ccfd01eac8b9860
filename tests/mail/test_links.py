"""Signed link tokens: round trips, tampering, purpose separation, URL shapes."""

from __future__ import annotations

import uuid

import pytest

from cancelnotify.links import (
    InvalidLinkTokenError,
    feedback_url,
    make_feedback_token,
    make_status_token,
    status_url,
    verify_feedback_token,
    verify_status_token,
)
from cancelnotify.settings import Settings

KEY = b"k" * 32
NID = uuid.UUID("8b0e6f4c-2a71-4d0e-9a53-0c1d2e3f4a5b")


class TestFeedbackToken:
    @pytest.mark.parametrize("answer", ["yes", "no"])
    def test_round_trip(self, answer: str) -> None:
        token = make_feedback_token(NID, answer, KEY)  # type: ignore[arg-type]
        vote = verify_feedback_token(token, KEY)
        assert (vote.notification_id, vote.answer) == (NID, answer)

    def test_answers_differ_and_are_url_safe(self) -> None:
        yes, no = make_feedback_token(NID, "yes", KEY), make_feedback_token(NID, "no", KEY)
        assert yes != no
        assert all(c.isalnum() or c in "-_" for c in yes + no)

    def test_wrong_key(self) -> None:
        token = make_feedback_token(NID, "yes", KEY)
        with pytest.raises(InvalidLinkTokenError):
            verify_feedback_token(token, b"other")

    @pytest.mark.parametrize("bad", ["", "x", "!!!!", "a" * 500, "é" * 10])
    def test_garbage(self, bad: str) -> None:
        with pytest.raises(InvalidLinkTokenError):
            verify_feedback_token(bad, KEY)

    def test_every_flipped_character_is_rejected(self) -> None:
        token = make_feedback_token(NID, "yes", KEY)
        for i in range(len(token)):
            flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
            with pytest.raises(InvalidLinkTokenError):
                verify_feedback_token(flipped, KEY)


class TestStatusToken:
    def test_round_trip(self) -> None:
        assert verify_status_token(make_status_token(NID, KEY), KEY) == NID

    def test_purposes_do_not_mix(self) -> None:
        with pytest.raises(InvalidLinkTokenError):
            verify_feedback_token(make_status_token(NID, KEY), KEY)
        with pytest.raises(InvalidLinkTokenError):
            verify_status_token(make_feedback_token(NID, "yes", KEY), KEY)


def test_url_shapes(settings: Settings) -> None:
    yes = feedback_url(settings, NID, "yes")
    assert yes.startswith("https://notify.shop.example/feedback/")
    token = yes.rsplit("/", 1)[1]
    assert verify_feedback_token(token, settings.signing_key()).answer == "yes"
    status = status_url(settings, NID)
    assert status.startswith("https://notify.shop.example/status/")
    assert verify_status_token(status.rsplit("/", 1)[1], settings.signing_key()) == NID
