"""Service configuration: one immutable Settings value, read from CANCELNOTIFY_* and `.env`."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Seconds = Annotated[float, Field(gt=0)]
BusinessDays = Annotated[int, Field(ge=0, le=90)]
MoneyString = Annotated[str, Field(pattern=r"^\d{1,15}(\.\d{1,4})?$")]
RefundMethodName = Literal["card", "paypal", "bank_transfer", "store_credit", "gift_card"]


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


class Settings(BaseSettings):
    """Everything the service can be told; durations are float seconds so tests can shrink them."""

    model_config = SettingsConfigDict(
        env_prefix="CANCELNOTIFY_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str = Field(
        default="sqlite+aiosqlite:///./cancelnotify.db",
        description="postgresql+asyncpg://user:pass@host/db, or sqlite+aiosqlite:///file.db",
    )
    database_pool_size: int = Field(
        default=10,
        ge=1,
        le=200,
        description="Connections per pool, no overflow; on PostgreSQL a replica has two (the "
        "webhooks' and the API's) and 3 more for the sender's statements: up to twice this + 3",
    )

    # --- SMTP ---------------------------------------------------------------------------
    smtp_host: str = Field(default="localhost", min_length=1, description="SMTP relay host")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP relay port")
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user, if any")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP AUTH password")
    smtp_security: Literal["none", "starttls", "tls"] = Field(
        default="starttls", description="none, starttls (upgrade on 587/25) or tls (implicit, 465)"
    )
    smtp_validate_certs: bool = Field(default=True, description="Verify the relay's certificate")
    smtp_ca_file: Path | None = Field(
        default=None, description="PEM bundle to trust instead of the system store (private relay)"
    )
    smtp_pool_size: int = Field(
        default=16,
        ge=1,
        le=32,
        description="SMTP connections kept open (sends at once; opened as sends need them)",
    )
    smtp_connect_timeout_seconds: Seconds = Field(default=10.0, description="TCP+greeting timeout")
    smtp_command_timeout_seconds: Seconds = Field(default=60.0, description="Per SMTP command")
    smtp_data_timeout_seconds: Seconds = Field(
        default=600.0, description="Wait for the reply after the final dot (RFC 5321: 10 min)"
    )

    # --- the message ----------------------------------------------------------------------
    mail_from: str = Field(
        default="Example Shop <orders@shop.example>", description="From, with display name"
    )
    reply_to: str | None = Field(default=None, description="Reply-To address")
    shop_name: str = Field(default="Example Shop", min_length=1, description="Shown in emails")
    shop_url: str = Field(default="https://shop.example", description="Shop home page")
    support_email: str | None = Field(default=None, description="Support address in emails")
    support_phone: str | None = Field(default=None, description="Support phone in emails")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where this service is reachable by customers (status and feedback links)",
    )
    templates_dir: Path | None = Field(
        default=None, description="Folder whose templates and catalogs override the defaults"
    )
    refund_policy: dict[RefundMethodName, tuple[BusinessDays, BusinessDays]] = Field(
        default_factory=dict,
        description="Refund window per method in business days, JSON merged over the defaults, "
        'e.g. {"card": [5, 10]} (defaults: card 5-10, paypal 3-5, bank_transfer 3-7, '
        "store_credit and gift_card 0-0 = immediately)",
    )
    link_signing_key: SecretStr | None = Field(
        default=None,
        description="Key for signed links in emails; derived from WEBHOOK_SECRET when unset",
    )

    # --- webhooks -------------------------------------------------------------------------
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks secret(s), whsec_..., space-separated during rotation",
    )
    shopify_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Shopify app client secret(s) for X-Shopify-Hmac-Sha256, space-separated",
    )
    woocommerce_webhook_secret: SecretStr | None = Field(
        default=None, description="WooCommerce webhook secret for X-WC-Webhook-Signature"
    )
    webhook_tolerance_seconds: Seconds = Field(
        default=300.0, description="Accepted clock skew of webhook-timestamp, both ways"
    )
    max_body_bytes: int = Field(default=65_536, ge=1024, description="Largest accepted body")

    # --- delivery -------------------------------------------------------------------------
    retry_base_seconds: Seconds = Field(default=5.0, description="First retry delay")
    retry_max_seconds: Seconds = Field(default=900.0, description="Longest retry delay")
    send_lifetime_seconds: Seconds = Field(
        default=86_400.0, description="A notice not sent by then ends failed"
    )
    lease_seconds: Seconds = Field(default=60.0, description="How long a claim is owned")
    poll_interval_seconds: Seconds = Field(default=1.0, description="Poll for due rows this often")
    dispatcher_concurrency: int = Field(
        default=64,
        ge=1,
        le=256,
        description="Notifications claimed at once per replica, refilled a quarter at a time "
        "(fewer, larger claims: PostgreSQL CPU per email 0.77 vs 1.12 ms at 8)",
    )
    dispatcher_enabled: bool = Field(default=True, description="Run the sender in this process")
    shutdown_grace_seconds: Seconds = Field(default=10.0, description="Finish sends on SIGTERM")
    worker_id: str | None = Field(
        default=None,
        description="Replica name in leases and logs (default: host:pid); a random suffix is added",
    )
    smtp_auth_pause_seconds: Seconds = Field(
        default=300.0,
        description="After a 530/535 (our credentials), pause sending this long, then probe",
    )

    # --- beyond the email ------------------------------------------------------------------
    callback_min_total: dict[str, MoneyString] = Field(
        default_factory=dict,
        description="Open a call-back task when the order total is at or above this per "
        'currency, JSON, e.g. {"EUR": "500", "USD": "500"}',
    )
    callback_vip: bool = Field(default=True, description="Open a call-back task for customer.vip")
    callback_reasons: list[str] = Field(
        default_factory=list,
        description='Reasons that open a call-back task, JSON, e.g. ["fraud_suspected"]',
    )
    callback_due_within_seconds: Seconds = Field(
        default=86_400.0, description="A call-back task is overdue this long after it opened"
    )
    tracking_enabled: bool = Field(
        default=False,
        description="Open pixel and signed click redirects in emails (feedback links always work)",
    )

    # --- web ------------------------------------------------------------------------------
    preview_enabled: bool = Field(default=False, description="Serve /preview (API key in serve)")
    host: str = Field(default="127.0.0.1", description="Bind address for serve")
    port: int = Field(default=8000, ge=0, le=65535, description="Bind port for serve")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="JSON logs on stderr at this level"
    )

    @field_validator("webhook_secret")
    @classmethod
    def _check_whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for secret in value.get_secret_value().split():
                decode_whsec(secret)
        return value

    @field_validator("refund_policy")
    @classmethod
    def _check_refund_policy(
        cls, value: dict[RefundMethodName, tuple[int, int]]
    ) -> dict[RefundMethodName, tuple[int, int]]:
        for method, (low, high) in value.items():
            if low > high:
                raise ValueError(f"{method}: the first number of days must not exceed the second")
        return value

    @field_validator("callback_min_total")
    @classmethod
    def _check_currencies(cls, value: dict[str, str]) -> dict[str, str]:
        for currency in value:
            if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
                raise ValueError(f"{currency!r} is not an ISO 4217 code such as EUR")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must start with postgresql+asyncpg:// or sqlite+aiosqlite://")
        return value

    @field_validator("public_base_url", "shop_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_smtp_auth(self) -> Settings:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("SMTP_USERNAME and SMTP_PASSWORD must be set together")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def webhook_keys(self) -> list[bytes]:
        """The HMAC keys of every configured Standard Webhooks secret (rotation = several)."""
        if self.webhook_secret is None:
            return []
        return [decode_whsec(s) for s in self.webhook_secret.get_secret_value().split()]

    def signing_key(self) -> bytes:
        """Key for the signed links the emails carry (feedback, status)."""
        if self.link_signing_key is not None:
            return self.link_signing_key.get_secret_value().encode()
        keys = self.webhook_keys()
        if keys:
            return b"links:" + keys[0]
        return b"links:unconfigured"


def decode_whsec(secret: str) -> bytes:
    """Turn `whsec_<base64>` into key bytes, or raise ValueError saying what is wrong."""
    raw = secret.removeprefix("whsec_")
    raw += "=" * (-len(raw) % 4)  # the reference libraries accept unpadded secrets
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be whsec_ followed by base64") from exc
    if not 16 <= len(key) <= 128:
        raise ValueError("must decode to 16-128 bytes")
    return key


def settings_markdown() -> str:
    """The configuration table of README, generated from the fields (a test keeps them equal)."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, SecretStr) or default is None:
            shown = "-"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, dict):
            shown = "see below" if default else "-"
        else:
            shown = f"`{default}`"
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows)


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, turning a validation error into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        name = f"CANCELNOTIFY_{field.upper()}" if first["loc"] else field
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from None
