"""Native platform webhooks (Shopify, WooCommerce): verify, map onto the canonical event, ingest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from cancelnotify.errors import BadRequest, InvalidEvent, NotConfigured, Unauthorized, field_errors
from cancelnotify.platform_signatures import is_woocommerce_ping, verify_shopify, verify_woocommerce
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.schemas.shopify import SHOPIFY_CANCELLED_TOPIC, shopify_to_event
from cancelnotify.schemas.woocommerce import woocommerce_to_event
from cancelnotify.services.ingest import Handover, IngestResult, ingest
from cancelnotify.services.webhooks import parse_json, require_json
from cancelnotify.settings import Settings
from cancelnotify.store import Store

Headers = Mapping[str, str]  # case-insensitive (Starlette's Headers) or lower-case keys


@dataclass(frozen=True, slots=True)
class Ignored:
    """Acknowledged (2xx, so the platform does not retry) and deliberately not acted on."""

    reason: str


def _header(headers: Headers, *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def _mapped(map_: Any) -> CancellationEventV1 | None:
    try:
        event: CancellationEventV1 | None = map_()
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise BadRequest("The body is not valid JSON") from None
        raise InvalidEvent(errors=field_errors(exc)) from None
    return event


def _stored(event: CancellationEventV1, raw: dict[str, Any]) -> dict[str, Any]:
    # What the dispatcher renders from (the canonical event) plus the body as the platform sent it.
    return {**event.model_dump(mode="json", exclude_none=True), "platform_payload": raw}


async def receive_shopify(
    store: Store,
    body: bytes,
    *,
    headers: Headers,
    settings: Settings,
    now: datetime,
    request_id: str | None,
    handover: Handover | None = None,
) -> IngestResult | Ignored:
    """`orders/cancelled` is mapped; any other topic is acknowledged and ignored."""
    if settings.shopify_webhook_secret is None:
        raise NotConfigured("CANCELNOTIFY_SHOPIFY_WEBHOOK_SECRET is not set")
    secrets = [s.encode() for s in settings.shopify_webhook_secret.get_secret_value().split()]
    # Newer "Events" deliveries send the same headers without the X- prefix.
    signature = _header(headers, "x-shopify-hmac-sha256", "shopify-hmac-sha256")
    if not verify_shopify(body, signature, secrets):
        raise Unauthorized("X-Shopify-Hmac-Sha256 is missing or does not match")
    topic = _header(headers, "x-shopify-topic", "shopify-topic")
    if topic != SHOPIFY_CANCELLED_TOPIC:
        return Ignored(f"topic {topic!r} is not {SHOPIFY_CANCELLED_TOPIC}")
    webhook_id = _header(headers, "x-shopify-webhook-id", "shopify-webhook-id")
    if not webhook_id:
        raise BadRequest("X-Shopify-Webhook-Id is missing")
    require_json(headers.get("content-type"))
    raw = parse_json(body)
    event = _mapped(
        lambda: shopify_to_event(
            body,
            webhook_id=webhook_id,
            shop_domain=_header(headers, "x-shopify-shop-domain", "shopify-shop-domain"),
            received_at=now,
            event_id=_header(headers, "x-shopify-event-id", "shopify-event-id"),
        )
    )
    assert event is not None  # noqa: S101 - the Shopify mapper never ignores
    return await ingest(
        store,
        event,
        source="shopify",
        webhook_id=webhook_id,
        payload=_stored(event, raw),
        settings=settings,
        now=now,
        request_id=request_id,
        handover=handover,
    )


async def receive_woocommerce(
    store: Store,
    body: bytes,
    *,
    headers: Headers,
    settings: Settings,
    now: datetime,
    request_id: str | None,
    handover: Handover | None = None,
) -> IngestResult | Ignored:
    """Orders whose status is `cancelled` are mapped; the creation ping and others are ignored."""
    if settings.woocommerce_webhook_secret is None:
        raise NotConfigured("CANCELNOTIFY_WOOCOMMERCE_WEBHOOK_SECRET is not set")
    if is_woocommerce_ping(headers.get("content-type"), body, headers):
        return Ignored("ping")
    # One secret, not split: WooCommerce secrets may contain spaces and HTML entities.
    secret = settings.woocommerce_webhook_secret.get_secret_value().encode()
    if not verify_woocommerce(body, headers.get("x-wc-webhook-signature"), [secret]):
        raise Unauthorized("X-WC-Webhook-Signature is missing or does not match")
    require_json(headers.get("content-type"))
    raw = parse_json(body)
    delivery_id = headers.get("x-wc-webhook-delivery-id") or ""
    event = _mapped(
        lambda: woocommerce_to_event(
            body,
            delivery_id=delivery_id,
            source_url=headers.get("x-wc-webhook-source"),
            received_at=now,
        )
    )
    if event is None:
        return Ignored(f"order status {raw.get('status')!r} is not cancelled")
    return await ingest(
        store,
        event,
        source="woocommerce",
        webhook_id=None,  # the delivery id changes on every retry; the event id is the key
        payload=_stored(event, raw),
        settings=settings,
        now=now,
        request_id=request_id,
        handover=handover,
    )
