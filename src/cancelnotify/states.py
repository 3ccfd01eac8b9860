"""The delivery state machine: states, SMTP outcomes and the transition function, as data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Status(StrEnum):
    queued = "queued"
    sending = "sending"
    retrying = "retrying"
    sent = "sent"
    failed = "failed"


class Outcome(StrEnum):
    """What one SMTP attempt came to (RELIABILITY.md §2)."""

    sent = "sent"  # 250 after DATA
    transient = "transient"  # 4xx, connection trouble before DATA: safe to retry
    permanent = "permanent"  # 5xx: never retried
    ambiguous = "ambiguous"  # timeout/disconnect after the final dot: may have been delivered
    config = "config"  # 530/535: our credentials are wrong; pause, do not burn retries
    expired = "expired"  # claimed after its send-by deadline: nothing was sent, it ends failed


LIFETIME_EXCEEDED = "lifetime_exceeded"

TERMINAL = frozenset({Status.sent, Status.failed})
DUE = frozenset({Status.queued, Status.retrying})

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.queued: frozenset({Status.sending, Status.failed}),
    Status.sending: frozenset({Status.sent, Status.retrying, Status.failed, Status.queued}),
    Status.retrying: frozenset({Status.sending, Status.failed}),
    Status.sent: frozenset(),
    Status.failed: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Transition:
    status: Status
    next_attempt_at: datetime | None
    failure_reason: str | None = None


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the delay fixed, half random, capped."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    rand = (rng or random).random()
    return delay / 2 + rand * delay / 2


def after_attempt(
    outcome: Outcome,
    *,
    attempt: int,
    now: datetime,
    send_by: datetime,
    retry_base: float,
    retry_max: float,
    resume_at: datetime | None = None,
) -> Transition:
    """Where a notification goes after an attempt with this outcome.

    `attempt` counts the failures of this notification so far, this one included; it drives
    the backoff. A `config` outcome is not the message's failure: it goes back untouched, due
    again when sending resumes (`resume_at`), without backoff.
    """
    if outcome is Outcome.sent:
        return Transition(Status.sent, None)
    if outcome is Outcome.permanent:
        return Transition(Status.failed, None, "rejected")
    if outcome is Outcome.config:
        next_at = resume_at or now
    else:
        # transient and ambiguous (resent with the same Message-ID) back off and retry.
        next_at = now + timedelta(seconds=backoff(attempt, retry_base, retry_max))
    if next_at > send_by:
        return Transition(Status.failed, None, LIFETIME_EXCEEDED)
    return Transition(Status.retrying, next_at)


def max_attempts_within(seconds: float, base: float, cap: float) -> int:
    """The most attempts the backoff schedule allows in `seconds` (equal jitter, worst case).

    Each wait is at least half its nominal delay; a hot loop would blow past this bound.
    """
    attempts, elapsed = 1, 0.0
    while True:
        wait = min(cap, base * 2.0 ** (attempts - 1)) / 2
        if elapsed + wait > seconds:
            return attempts
        elapsed += wait
        attempts += 1
