"""Prometheus collectors, one registry per app instance (so tests and replicas do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class Metrics:
    """Every metric the service exports; created in the lifespan and kept on app.state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "cancelnotify_webhooks_total",
            "Webhooks received, by source and outcome",
            ["source", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "cancelnotify_send_attempts_total",
            "SMTP attempts by outcome (sent, transient, permanent, ambiguous, config)",
            ["outcome"],
            registry=r,
        )
        self.smtp_replies = Counter(
            "cancelnotify_smtp_replies_total",
            "SMTP replies by code class (2xx, 4xx, 5xx, none)",
            ["code_class"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "cancelnotify_send_duration_seconds",
            "Duration of one SMTP transaction",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "cancelnotify_webhook_to_smtp_seconds",
            "Time from webhook receipt to SMTP acceptance",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lease_rescues = Counter(
            "cancelnotify_lease_rescues_total",
            "Notifications reclaimed after another replica's lease expired",
            registry=r,
        )
        self.handovers = Counter(
            "cancelnotify_handovers_total",
            "Notifications claimed by the webhook's own statement and sent from memory",
            registry=r,
        )
        self.ambiguous_sends = Counter(
            "cancelnotify_ambiguous_sends_total",
            "Sends whose outcome was lost after the final dot (may have been delivered)",
            registry=r,
        )
        self.sending_paused = Gauge(
            "cancelnotify_sending_paused",
            "1 while sending is paused by an SMTP configuration error (530/535)",
            registry=r,
        )
        self.notifications = Gauge(
            "cancelnotify_notifications",
            "Notifications by state (read from the database at scrape time)",
            ["status"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "cancelnotify_queue_depth",
            "Notifications queued or retrying (database, at scrape time)",
            registry=r,
        )
        self.oldest_queued_age = Gauge(
            "cancelnotify_oldest_queued_age_seconds",
            "Age of the oldest notification not yet sent or failed",
            registry=r,
        )


def code_class(code: int | None) -> str:
    return "none" if code is None else f"{code // 100}xx"
