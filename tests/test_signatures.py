"""Standard Webhooks verification against the specification's published vectors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cancelnotify.settings import Settings, decode_whsec
from cancelnotify.signatures import SignatureError, parse_headers, sign, verify
from tests.conftest import SHARED_FIXTURES, running_client

pytestmark = pytest.mark.skipif(
    not (SHARED_FIXTURES / "standard-webhooks-vectors.json").is_file(),
    reason="../shared/fixtures/platforms is not present",
)


def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (SHARED_FIXTURES / "standard-webhooks-vectors.json").read_text()
    )
    return data


def _check(vector: dict[str, Any], signature: str, *, now: float | None = None) -> None:
    headers = parse_headers(vector["msg_id"], str(vector["timestamp"]), signature)
    verify(
        headers,
        vector["payload"].encode(),
        [decode_whsec(vector["secret"])],
        now=vector["timestamp"] if now is None else now,
        tolerance=300,
    )


class TestPublishedVectors:
    @pytest.mark.parametrize("index", [0, 1])
    def test_sign_reproduces_the_published_signature(self, index: int) -> None:
        v = vectors()["vectors"][index]
        key = decode_whsec(v["secret"])
        assert (
            sign(key, v["msg_id"], v["timestamp"], v["payload"].encode())
            == (v["expected_signature"])
        )

    @pytest.mark.parametrize("index", [0, 1])
    def test_published_signature_verifies_with_the_clock_at_the_vector(self, index: int) -> None:
        v = vectors()["vectors"][index]
        _check(v, v["expected_signature"])
        _check(v, v["expected_signature"], now=v["timestamp"] + 299)

    @pytest.mark.parametrize("index", [0, 1])
    def test_published_wrong_signatures_are_rejected(self, index: int) -> None:
        negatives = vectors()["negative_cases"]
        v = vectors()["vectors"][index]
        with pytest.raises(SignatureError):
            _check(v, negatives[index]["webhook-signature"])

    def test_multi_signature_header_accepts_the_valid_entry_and_skips_v2(self) -> None:
        v = vectors()["vectors"][0]
        extra = vectors()["negative_cases"][2]["webhook-signature_entries_besides_the_valid_one"]
        _check(v, " ".join([*extra, v["expected_signature"]]))
        with pytest.raises(SignatureError):
            _check(v, " ".join(extra))

    @pytest.mark.parametrize("signature", ["v1,", "v1,dawfeoifkpqwoekfpqoekf", ""])
    def test_truncated_or_empty_signatures_are_rejected(self, signature: str) -> None:
        with pytest.raises(SignatureError):
            _check(vectors()["vectors"][0], signature)

    @pytest.mark.parametrize("skew", [-301, 301])
    def test_timestamps_outside_five_minutes_either_way_are_rejected(self, skew: int) -> None:
        v = vectors()["vectors"][0]
        with pytest.raises(SignatureError):
            _check(v, v["expected_signature"], now=v["timestamp"] + skew)

    def test_non_integer_timestamp_is_rejected(self) -> None:
        with pytest.raises(SignatureError):
            parse_headers("msg_1", "hello", "v1,abc")

    def test_unpadded_secret_equals_padded(self) -> None:
        assert decode_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS") == decode_whsec(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS="
        )


class TestThroughTheRoute:
    """The published vector through the real endpoint: the signature passes, then the schema."""

    async def test_vector_passes_signature_then_fails_schema(self, make_settings: Any) -> None:
        v = vectors()["vectors"][1]
        settings: Settings = make_settings(webhook_secret=v["secret"], dispatcher_enabled=False)
        frozen = datetime.fromtimestamp(v["timestamp"] + 10, UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": v["msg_id"],
            "webhook-timestamp": str(v["timestamp"]),
        }
        async with running_client(settings, clock=lambda: frozen) as client:
            ok = await client.post(
                "/v1/webhooks/order-cancelled",
                content=v["payload"].encode(),
                headers={**headers, "webhook-signature": v["expected_signature"]},
            )
            bad = await client.post(
                "/v1/webhooks/order-cancelled",
                content=v["payload"].encode(),
                headers={
                    **headers,
                    "webhook-signature": vectors()["negative_cases"][1]["webhook-signature"],
                },
            )
        assert ok.status_code == 422  # authentic, but not a cancellation event
        assert {e["field"] for e in ok.json()["errors"]} >= {"event_id", "order", "customer"}
        assert bad.status_code == 401
        assert isinstance(ok, httpx.Response)
