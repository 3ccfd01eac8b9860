"""Shopify and WooCommerce webhooks end to end: signed natively, mapped, stored, emailed once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from cancelnotify.mail.render import REASON_COPY, Renderer
from cancelnotify.models import Cancellation
from cancelnotify.platform_signatures import shopify_signature, woocommerce_signature
from cancelnotify.schemas.event import Reason
from cancelnotify.settings import Settings
from tests.api.test_webhooks import count_rows
from tests.conftest import SHARED_FIXTURES, Sink, running_client


def reason_copy(settings: Settings, language: str, reason: Reason) -> str:
    """The customer wording of a reason code in a language, as the email must carry it."""
    return Renderer(settings).translations(language).gettext(REASON_COPY[reason])


def flat(text: str) -> str:
    return " ".join(text.split())


OWN = Path(__file__).resolve().parents[1] / "platforms" / "fixtures"
SHOPIFY_SECRET = "shpss_test_secret_0123456789"
WOO_SECRET = "woo secret with spaces & <entities>"


@pytest.fixture
def platform_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        shopify_webhook_secret=SHOPIFY_SECRET, woocommerce_webhook_secret=WOO_SECRET
    )


@pytest.fixture
async def pclient(platform_settings: Settings) -> httpx.AsyncClient:
    async with running_client(platform_settings) as c:
        yield c  # type: ignore[misc]


def shopify_headers(body: bytes, secret: str = SHOPIFY_SECRET, **extra: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-shopify-hmac-sha256": shopify_signature(body, secret.encode()),
        "x-shopify-topic": "orders/cancelled",
        "x-shopify-shop-domain": "example.myshopify.com",
        "x-shopify-api-version": "2024-01",
        "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        **extra,
    }


def woo_headers(body: bytes, secret: str = WOO_SECRET) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-wc-webhook-source": "https://shop.example/",
        "x-wc-webhook-topic": "order.updated",
        "x-wc-webhook-resource": "order",
        "x-wc-webhook-event": "updated",
        "x-wc-webhook-signature": woocommerce_signature(body, secret.encode()),
        "x-wc-webhook-id": "12",
        "x-wc-webhook-delivery-id": "8b5c0d6a1e",
    }


class TestShopify:
    async def test_cancelled_order_is_emailed_with_the_mapped_details(
        self, pclient: httpx.AsyncClient, sink: Sink, platform_settings: Settings
    ) -> None:
        body = (OWN / "shopify_order_cancelled_refunded.json").read_bytes()

        r = await pclient.post("/v1/webhooks/shopify", content=body, headers=shopify_headers(body))

        assert r.status_code == 202, r.text
        await sink.wait_for(1)
        msg = sink.messages[0]
        assert msg.recipients == ["ana@example.com"]
        for part in (flat(msg.part("plain")), flat(msg.part("html"))):
            assert "Ana" in part
            assert "#1001" in part
            assert reason_copy(platform_settings, "es", Reason.out_of_stock) in part
        assert "129,90 €" in flat(msg.part("plain"))  # Spanish money (flat() folds the NBSP)
        again = await pclient.post(
            "/v1/webhooks/shopify", content=body, headers=shopify_headers(body)
        )
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        engine = create_async_engine(platform_settings.database_url)
        async with engine.connect() as conn:
            stored = (await conn.execute(select(Cancellation.payload))).scalar_one()
        await engine.dispose()
        assert stored["platform_payload"] == json.loads(body)  # the raw body is kept

    async def test_other_topics_are_acknowledged_and_ignored(
        self, pclient: httpx.AsyncClient, platform_settings: Settings
    ) -> None:
        body = (OWN / "shopify_order_cancelled_refunded.json").read_bytes()
        headers = shopify_headers(body, **{"x-shopify-topic": "orders/updated"})
        r = await pclient.post("/v1/webhooks/shopify", content=body, headers=headers)
        assert r.status_code == 200
        assert r.json()["ignored"] is True
        assert await count_rows(platform_settings) == (0, 0, 0)

    @pytest.mark.parametrize("case", ["tampered", "wrong_secret", "missing_header"])
    async def test_bad_signatures_are_rejected_and_nothing_is_stored(
        self, pclient: httpx.AsyncClient, platform_settings: Settings, sink: Sink, case: str
    ) -> None:
        body = (OWN / "shopify_order_cancelled_refunded.json").read_bytes()
        headers = shopify_headers(body)
        if case == "tampered":
            body = body.replace(b"129.90", b"129.91", 1)
        elif case == "wrong_secret":
            headers = shopify_headers(body, secret="not-the-secret")
        else:
            del headers["x-shopify-hmac-sha256"]
        r = await pclient.post("/v1/webhooks/shopify", content=body, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert await count_rows(platform_settings) == (0, 0, 0)
        await asyncio.sleep(0.1)
        assert sink.messages == []

    async def test_unconfigured_secret_refuses_everything(self, client: httpx.AsyncClient) -> None:
        body = (OWN / "shopify_order_cancelled_refunded.json").read_bytes()
        r = await client.post("/v1/webhooks/shopify", content=body, headers=shopify_headers(body))
        assert r.status_code == 503
        assert "SHOPIFY_WEBHOOK_SECRET" in r.json()["detail"]


class TestWooCommerce:
    async def test_ping_is_answered_200_and_stores_nothing(
        self, pclient: httpx.AsyncClient, platform_settings: Settings
    ) -> None:
        r = await pclient.post(
            "/v1/webhooks/woocommerce",
            content=b"webhook_id=12",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        assert await count_rows(platform_settings) == (0, 0, 0)

    async def test_cancelled_order_is_emailed(self, pclient: httpx.AsyncClient, sink: Sink) -> None:
        body = (OWN / "woocommerce_order_cancelled_paid.json").read_bytes()
        r = await pclient.post("/v1/webhooks/woocommerce", content=body, headers=woo_headers(body))
        assert r.status_code == 202, r.text
        await sink.wait_for(1)
        msg = sink.messages[0]
        assert msg.recipients == ["jorg@example.de"]
        text = flat(msg.part("plain"))
        assert "Jörg" in text
        assert "#1042" in text
        assert "40,00 €" in text

    async def test_other_statuses_are_ignored(
        self, pclient: httpx.AsyncClient, platform_settings: Settings
    ) -> None:
        order = json.loads((OWN / "woocommerce_order_cancelled_paid.json").read_bytes())
        order["status"] = "processing"
        body = json.dumps(order).encode()
        r = await pclient.post("/v1/webhooks/woocommerce", content=body, headers=woo_headers(body))
        assert r.status_code == 200
        assert r.json()["ignored"] is True
        assert await count_rows(platform_settings) == (0, 0, 0)

    async def test_wrong_signature_is_rejected(
        self, pclient: httpx.AsyncClient, platform_settings: Settings
    ) -> None:
        body = (OWN / "woocommerce_order_cancelled_paid.json").read_bytes()
        r = await pclient.post(
            "/v1/webhooks/woocommerce", content=body, headers=woo_headers(body, "wrong")
        )
        assert r.status_code == 401
        assert await count_rows(platform_settings) == (0, 0, 0)


needs_shared = pytest.mark.skipif(
    not SHARED_FIXTURES.is_dir(), reason="../shared/fixtures/platforms is not present"
)


@needs_shared
class TestRealPayloads:
    """Replays real third-party bodies with their published signature vectors (never copied)."""

    @pytest.mark.parametrize("vector", [0, 1])
    async def test_published_shopify_vectors_are_accepted_and_emailed(
        self, make_settings: Callable[..., Settings], sink: Sink, vector: int
    ) -> None:
        vectors = json.loads((SHARED_FIXTURES / "shopify-hmac-vectors.json").read_bytes())
        v = vectors["vectors"][vector]
        body = (SHARED_FIXTURES / v["body_file"]).read_bytes()
        settings = make_settings(shopify_webhook_secret=v["secret"])
        headers = {
            "content-type": "application/json",
            "x-shopify-hmac-sha256": v["expected_x_shopify_hmac_sha256"],
            "x-shopify-topic": "orders/cancelled",
            "x-shopify-webhook-id": f"real-{vector}",
        }
        async with running_client(settings) as client:
            r = await client.post("/v1/webhooks/shopify", content=body, headers=headers)
            assert r.status_code == 202, r.text
            await sink.wait_for(1)
        msg = sink.messages[0]
        assert msg.recipients[0].startswith("jon@")
        assert "#9999" in msg.part("plain")
        assert "John" in msg.part("plain")

    async def test_woocommerce_docs_order_marked_cancelled_is_emailed(
        self, make_settings: Callable[..., Settings], sink: Sink
    ) -> None:
        body = (SHARED_FIXTURES / "woocommerce-order-cancelled.CONSTRUCTED.json").read_bytes()
        settings = make_settings(woocommerce_webhook_secret=WOO_SECRET)
        async with running_client(settings) as client:
            r = await client.post(
                "/v1/webhooks/woocommerce", content=body, headers=woo_headers(body)
            )
            assert r.status_code == 202, r.text
            await sink.wait_for(1)
            processing = (SHARED_FIXTURES / "woocommerce-order.docs-example.json").read_bytes()
            r2 = await client.post(
                "/v1/webhooks/woocommerce", content=processing, headers=woo_headers(processing)
            )
            assert r2.status_code == 200
            assert r2.json()["ignored"] is True
        assert sink.messages[0].recipients == ["john.doe@example.com"]
        assert "#727" in sink.messages[0].part("plain")
