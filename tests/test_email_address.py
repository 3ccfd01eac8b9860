"""customer.email: the fast check for plain addresses agrees with email-validator (EmailStr)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError
from pydantic.networks import validate_email
from pydantic_core import PydanticCustomError

from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1, _check_email

LOCAL = "abcxyzABCXYZ0189._+-!#$%&'*/=?^`{|}~\"(),:;<>@[\\] é"
DOMAIN = "abcdexyz0189-.ABé_"
TLDS = [
    "com",
    "io",
    "shop",
    "de",
    "com",
    "org",
    "c0m",
    "x",
    "COM",
    "test",
    "local",
    "localhost",
    "onion",
    "invalid",
    "arpa",
    "example",
    "xn--p1ai",
    "123",
    "",
]


def corpus(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out = [
        "ana@example.com",
        "ana.perez+orders@shop.example.com",
        "a@b.co",
        "x@sub.local",
        "x@localhost",
        "x@my.test",
        "x@mail.onion",
        "x@foo.arpa",
        "x@foo.invalid",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@exa--mple.com",
        "a@xn--bcher-kva.example",
        "a@Example.COM",
        "Ana <ana@example.com>",
        "ana@example.com.",
        "ana@example",
        "ana@123.45",
        "ana@" + "a" * 63 + ".com",
        "ana@" + "a" * 64 + ".com",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "a" * 241 + "@example.com",
        "a" * 242 + "@example.com",
        "ana@b.c",
        "ana@example.c0m",
        '"ana"@example.com',
        "ané@example.com",
        "ana@exämple.com",
        "ana@example.com\n",
        "ana@@example.com",
        "@example.com",
        "ana@",
    ]
    for _ in range(n):
        local = "".join(rng.choice(LOCAL) for _ in range(rng.choice([1, 3, 8, 20, 70])))
        labels = [
            "".join(rng.choice(DOMAIN) for _ in range(rng.choice([1, 2, 5, 12, 63, 64])))
            for _ in range(rng.choice([0, 1, 2, 3]))
        ]
        if rng.random() < 0.8:  # mostly well-formed pieces, so both paths are exercised
            local = "".join(c for c in local if c.isascii() and c not in '"(),:;<>@[\\] ')
            local = ".".join(p for p in local.split(".") if p) or "x"
            labels = [
                "".join(c for c in lab.lower() if c in "abcdexyz0189-.").strip("-.") or "a"
                for lab in labels
            ]
        out.append(f"{local}@{'.'.join([*labels, rng.choice(TLDS)])}")
    return out


def outcome(check: object, value: str) -> str:
    try:
        return "ok " + check(value)  # type: ignore[operator]
    except PydanticCustomError as exc:
        return "error " + str(exc)


def library(value: str) -> str:
    return validate_email(value)[1]


def test_the_fast_check_and_email_validator_agree_on_every_address() -> None:
    values = corpus(20_000)
    fast = [outcome(_check_email, v) for v in values]
    slow = [outcome(library, v) for v in values]
    disagree = [(v, f, s) for v, f, s in zip(values, fast, slow, strict=True) if f != s]
    assert disagree == []
    # Not a vacuous corpus: many plain addresses take the fast path, many are refused.
    accepted = sum(f.startswith("ok ") for f in fast)
    assert accepted > 4_000
    assert len(values) - accepted > 4_000


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ana.perez+orders@shop.example.com", "ana.perez+orders@shop.example.com"),
        ("Ana.Perez@Shop.Example.COM", "Ana.Perez@shop.example.com"),  # domain lower-cased
        ("  ana@example.com ", "ana@example.com"),
        ("Ana Pérez <ana@example.com>", "ana@example.com"),
        ("ana@bücher.example", "ana@bücher.example"),
    ],
)
def test_the_event_keeps_the_normalized_address(given: str, stored: str) -> None:
    event = CancellationEventV1.model_validate(sample_event(email=given))
    assert event.customer.email == stored


@pytest.mark.parametrize(
    "given", ["ana@shop.localhost", "ana@example", "ana..b@example.com", "ana@-shop.com", ""]
)
def test_an_undeliverable_address_names_the_field(given: str) -> None:
    with pytest.raises(ValidationError) as info:
        CancellationEventV1.model_validate(sample_event(email=given))
    [error] = info.value.errors()
    assert error["loc"] == ("customer", "email")
    assert error["msg"].startswith("value is not a valid email address")
