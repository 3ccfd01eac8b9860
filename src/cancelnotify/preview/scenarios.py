"""Sample scenarios for /preview: every reason, every refund method, edge-case data, as events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1, Reason, RefundMethod

# Fixed so a scenario renders the same today and tomorrow (refund windows depend on the date).
OCCURRED_AT: Final = "2026-11-26T10:00:00Z"
DEFAULT_SCENARIO: Final = "out_of_stock"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One named sample event: what a template author wants to see rendered."""

    name: str
    title: str
    data: dict[str, Any]

    def event(self) -> CancellationEventV1:
        return CancellationEventV1.model_validate(self.data)


def _event(name: str, **changes: Any) -> dict[str, Any]:
    data = sample_event(event_id=f"evt_preview_{name}", occurred_at=OCCURRED_AT, **changes)
    data["customer"]["locale"] = "en-GB"
    return data


def _with(name: str, edit: Callable[[dict[str, Any]], None], **changes: Any) -> dict[str, Any]:
    data = _event(name, **changes)
    edit(data)
    return data


_REFUND_DETAILS: Final[dict[RefundMethod, dict[str, Any]]] = {
    RefundMethod.card: {"card_last4": "4242", "card_brand": "Visa"},
    RefundMethod.paypal: {},
    RefundMethod.store_credit: {},
    RefundMethod.bank_transfer: {},
    RefundMethod.gift_card: {},
    RefundMethod.none: {"amount": "0.00"},
}


def _refund(method: RefundMethod) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["refund"] = {
            "amount": "129.90",
            "currency": "EUR",
            "method": method.value,
            "status": "pending",
            **_REFUND_DETAILS[method],
        }

    return edit


def _no_alternatives(data: dict[str, Any]) -> None:
    data["alternatives"] = []
    data["reorder_url"] = None


def _many_alternatives(data: dict[str, Any]) -> None:
    data["alternatives"] = [
        {
            "name": f"Trail shoe v{n}",
            "url": f"https://shop.example/p/trail-shoe-v{n}",
            "image_url": f"https://shop.example/img/trail-shoe-v{n}.jpg",
            "price": f"{100 + n}.90",
        }
        for n in range(2, 8)
    ]


def _no_charge(data: dict[str, Any]) -> None:
    data["refund"] = None


_LONG_ITEM: Final = (
    "Ultralight waterproof trail running shoe with reinforced toe cap, recycled mesh upper, "
    "Vibram Megagrip outsole and extra-wide fit for long days in the mountains (limited edition)"
)


def _long_names(data: dict[str, Any]) -> None:
    customer = data["customer"]
    customer["first_name"] = "Maximiliana Wilhelmina Konstantina Alexandrina"
    customer["last_name"] = "Fitzgerald-Montgomery-Habsburg-Lothringen"
    item = data["order"]["items"][0]
    item["name"] = _LONG_ITEM
    data["alternatives"][0]["name"] = _LONG_ITEM.replace("shoe", "shoe v2", 1)
    data["cancellation"]["note"] = (
        "Our supplier told us on Monday that this model will not be produced again in this "
        "size; we looked for another supplier for a week but could not find one in time."
    )


def _accented(data: dict[str, Any]) -> None:
    data["customer"].update(first_name="Zoë", last_name="Ångström-Müller", locale="fr-FR")
    item = data["order"]["items"][0]
    item["name"] = "Crème brûlée set \u2013 édition spéciale « Noël »"
    data["alternatives"][0]["name"] = "Façade café set \u2013 Ørsted · Łódź · Señor"
    data["cancellation"]["note"] = "Le fournisseur n\u2019a pas pu livrer à temps ; désolé·e·s !"


def _many_items(data: dict[str, Any]) -> None:
    data["order"]["items"] = [
        {
            "sku": f"SKU-{n:03d}",
            "name": f"Sock pack no. {n}",
            "quantity": 1 + n % 3,
            "unit_price": "4.90",
            "image_url": f"https://shop.example/img/sock-{n}.jpg",
            "url": f"https://shop.example/p/sock-{n}",
        }
        for n in range(1, 61)
    ]


def _bare(data: dict[str, Any]) -> None:
    data["customer"]["first_name"] = None
    data["cancellation"]["note"] = None
    data["order"]["placed_at"] = None
    data["order"]["status_url"] = None
    data["order"]["items"][0].pop("image_url")
    data["order"]["items"][0].pop("url")


def _build() -> dict[str, Scenario]:
    out: list[Scenario] = [
        Scenario(reason.value, f"Reason: {reason.value}", _event(reason.value, reason=reason.value))
        for reason in Reason
    ]
    out += [
        Scenario(f"refund_{m.value}", f"Refund: {m.value}", _with(f"refund_{m.value}", _refund(m)))
        for m in RefundMethod
    ]
    out += [
        Scenario("not_charged", "Nothing was paid (no refund)", _with("not_charged", _no_charge)),
        Scenario(
            "no_alternatives",
            "No alternatives, no reorder link",
            _with("no_alternatives", _no_alternatives),
        ),
        Scenario(
            "many_alternatives",
            "Six alternatives (four are shown)",
            _with("many_alternatives", _many_alternatives),
        ),
        Scenario("long_names", "Long names and note", _with("long_names", _long_names)),
        Scenario("accented", "Accented text (fr-FR customer)", _with("accented", _accented)),
        Scenario("many_items", "60 items (50 shown)", _with("many_items", _many_items)),
        Scenario("minimal", "Only required fields", _with("minimal", _bare)),
    ]
    return {s.name: s for s in out}


SCENARIOS: Final[dict[str, Scenario]] = _build()


def scenario_names() -> list[str]:
    return list(SCENARIOS)
