"""Signed claims: bound to a service and optionally a route, short-lived, used once; in isolation
and under a real uvicorn, with the verifier's clock injected (no test waits for time to pass)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
from fastapi import FastAPI
from hypothesis import assume, given
from hypothesis import strategies as st
from tests._servers import serve

import purposeguard as pg
from purposeguard.middleware import (
    MAX_CLAIM_LENGTH,
    Caller,
    ClaimReader,
    ClaimRefused,
    HMACClaimVerifier,
    Rejection,
    ReplayCache,
    RoutePurposes,
    purposes,
    sign_claim,
)
from purposeguard.middleware.asgi import PurposeMiddleware

KEY = b"signed-test-key-0123456789"
OLD_KEY = b"signed-old-key-0123456789"
T0 = 1_900_000_000
ORDERS = "/orders/{order_id}"
HERE = Caller({}, route=ORDERS)


class Clock:
    """The verifier's time, set by the test."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(clock: Clock | None = None, **options: Any) -> HMACClaimVerifier:
    return HMACClaimVerifier(KEY, audience="orders-svc", clock=clock or Clock(), **options)


def sign(purpose: str = "audit", **options: Any) -> str:
    options.setdefault("audience", "orders-svc")
    options.setdefault("now", T0)
    return sign_claim(purpose, KEY, **options)


def verdict(check: HMACClaimVerifier, claim: str, caller: Caller = HERE) -> str | None:
    """The purpose vouched for, None, or ``refused:<reason>``."""
    try:
        return check(claim, caller)
    except ClaimRefused as refused:
        return f"refused:{refused.reason}"


def v1(purpose: str, stamp: int, key: bytes = KEY) -> str:
    body = f"v1:{purpose}:{stamp}"
    sig = base64.urlsafe_b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}:{sig.rstrip(b'=').decode()}"


def test_a_claim_is_accepted_by_the_service_it_names_and_no_other() -> None:
    assert verdict(verifier(), sign()) == "audit"
    assert verdict(verifier(), sign(audience="billing-svc")) == "refused:wrong_audience"


def test_a_route_bound_claim_is_accepted_on_that_route_only() -> None:
    bound = sign(route=ORDERS)
    assert verdict(verifier(), bound) == "audit"
    other = Caller({}, route="/invoices/{invoice_id}")
    assert verdict(verifier(), sign(route=ORDERS), other) == "refused:wrong_route"
    assert verdict(verifier(), sign(route=ORDERS), Caller({})) == "refused:wrong_route"
    assert verdict(verifier(require_route=True), sign()) == "refused:wrong_route"
    assert verdict(verifier(require_route=True), sign(route=ORDERS)) == "audit"


def test_a_claim_lives_max_age_seconds_and_tolerates_skew() -> None:
    clock = Clock()
    check = verifier(clock)
    clock.now = T0 + 60
    assert verdict(check, sign()) == "audit"  # exactly max_age old: still valid
    clock.now = T0 + 61
    assert verdict(check, sign()) == "refused:expired"
    clock.now = T0 - 5
    assert verdict(check, sign()) == "audit"
    clock.now = T0 - 6
    assert verdict(check, sign()) == "refused:not_yet_valid"
    assert HMACClaimVerifier(KEY, audience="a").max_age == 60.0


def test_each_nonce_is_accepted_once_while_its_claim_lives() -> None:
    clock = Clock()
    check = verifier(clock)
    claim = sign(nonce="n" * 22)
    assert verdict(check, claim) == "audit"
    assert verdict(check, claim) == "refused:replayed"
    # the same nonce in a freshly signed claim is the same claim to the cache
    assert verdict(check, sign(nonce="n" * 22, now=T0 + 1)) == "refused:replayed"
    assert verdict(check, sign()) == "audit"  # a new random nonce
    clock.now = T0 + 62  # the first claim has expired, so it is refused, and its nonce forgotten
    assert verdict(check, claim) == "refused:expired"
    assert verdict(check, sign(nonce="n" * 22, now=T0 + 62)) == "audit"


def test_a_full_replay_cache_refuses_rather_than_forgets() -> None:
    clock = Clock()
    check = verifier(clock, replay_cache=ReplayCache(capacity=2))
    assert [verdict(check, sign()) for _ in range(3)] == ["audit", "audit", "refused:"
                                                         "replay_cache_full"]  # fmt: skip
    clock.now = T0 + 61  # the remembered claims have expired: room again
    assert verdict(check, sign(now=T0 + 61)) == "audit"


def test_a_signer_of_another_key_or_a_changed_claim_is_not_vouched_for() -> None:
    assert verdict(verifier(), sign_claim("audit", OLD_KEY, audience="orders-svc", now=T0)) is None
    rotated = HMACClaimVerifier(KEY, OLD_KEY, audience="orders-svc", clock=Clock())
    assert verdict(rotated, sign_claim("audit", OLD_KEY, audience="orders-svc", now=T0)) == "audit"
    tampered = sign().replace(":audit:", ":marketing:")
    assert verdict(verifier(), tampered) is None


@given(st.data())
def test_no_change_to_a_signed_claim_makes_it_vouch_for_a_purpose(data: st.DataObject) -> None:
    claim = sign()
    i = data.draw(st.integers(0, len(claim) - 1))
    char = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0189:-_"))
    changed = claim[:i] + char + claim[i + 1 :]
    assume(changed != claim)
    result = verdict(verifier(), changed)
    assert result is None or result.startswith("refused:")


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("audit", None),  # a plain purpose id is no signed claim
        ("v2", None),
        (v1("audit", T0), "refused:unsupported_version"),
        ("v3:audit:1:x", "refused:unsupported_version"),
        ("v2:audit:1:orders-svc", "refused:malformed"),
        (f"v2:audit:{T0}:orders svc:-:{'n' * 22}:{'s' * 43}", "refused:malformed"),
        (f"v2:audit:{T0}:orders-svc:short:{'n' * 22}:{'s' * 43}", "refused:malformed"),
        (f"v2:audit:{T0}:orders-svc:-:{'n' * 22}:{'s' * 43}", None),  # well-formed, bad signature
    ],
)
def test_claims_of_other_versions_or_shapes_are_refused(claim: str, expected: str | None) -> None:
    assert verdict(verifier(), claim) == expected


def test_v1_claims_are_accepted_only_when_explicitly_allowed() -> None:
    clock = Clock()
    migrating = verifier(clock, accept_v1=True)
    assert verdict(migrating, v1("audit", T0)) == "audit"
    assert verdict(migrating, v1("audit", T0, OLD_KEY)) is None
    clock.now = T0 + 61
    assert verdict(migrating, v1("audit", T0)) == "refused:expired"
    assert verdict(verifier(), v1("audit", T0)) == "refused:unsupported_version"


def test_a_claim_is_made_of_w3c_baggage_value_characters() -> None:
    # baggage-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E
    octets = {chr(c) for c in (0x21, *range(0x23, 0x2C), *range(0x2D, 0x3B), *range(0x3C, 0x5C),
                               *range(0x5D, 0x7F))}  # fmt: skip
    longest = sign("a." * 63 + "ab", audience="s" * 64, route=ORDERS, nonce="n" * 64)
    for claim in (sign(), sign(route="/a/<int:id>"), longest):
        assert set(claim) <= octets
        assert quote(claim, safe=":-_.~") == claim  # what Outbound sends: unescaped
    assert len(longest) <= MAX_CLAIM_LENGTH


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sign_claim("audit", KEY, audience="no spaces"), "a service name is"),
        (lambda: sign_claim("audit", KEY, audience="a", nonce="short"), "16-64 base64url"),
        (lambda: sign_claim("audit", KEY, audience="a", route=""), "route template"),
        (lambda: sign_claim("Audit", KEY, audience="a"), "not a purpose id"),
        (lambda: sign_claim("audit", b"short", audience="a"), "at least 16 bytes"),
        (lambda: HMACClaimVerifier(audience="a"), "at least one key"),
        (lambda: HMACClaimVerifier(KEY, audience="a b"), "a service name is"),
        (lambda: HMACClaimVerifier(KEY, audience="a", max_age=0), "max_age must be > 0"),
        (lambda: ReplayCache(capacity=0), "positive number"),
    ],
)
def test_bad_settings_are_configuration_errors(call: Any, message: str) -> None:
    with pytest.raises(pg.ConfigurationError, match=message):
        call()


def test_the_verifier_needs_to_know_which_service_it_is() -> None:
    with pytest.raises(TypeError, match="audience"):
        HMACClaimVerifier(KEY)  # type: ignore[call-arg]
    assert "signed-test" not in repr(verifier())


def test_ignore_mode_still_refuses_a_replayed_or_expired_claim(configured: pg.Policy) -> None:
    clock = Clock()
    reader = ClaimReader(verifier=verifier(clock), untrusted="ignore")
    route = RoutePurposes.of(("inquiry", "audit"))

    def decide(claim: str) -> str | Rejection:
        return reader.decide(route, [("baggage", f"purposeguard.purpose={claim}")], lambda: HERE)

    claim = sign()
    assert decide(claim) == "audit"
    assert getattr(decide(claim), "reason", None) == "replayed"
    assert decide("audit") == "inquiry"  # unsigned: ignored, as before
    clock.now = T0 + 61
    assert getattr(decide(sign()), "reason", None) == "expired"


# --- under a real uvicorn ------------------------------------------------------------------------


def make_app(check: HMACClaimVerifier) -> PurposeMiddleware:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    @purposes("inquiry", "audit")
    async def order(order_id: str) -> dict[str, Any]:
        return {"purpose": pg.current_purpose()}

    @app.get("/invoices/{invoice_id}")
    @purposes("inquiry", "audit")
    async def invoice(invoice_id: str) -> dict[str, Any]:
        return {"purpose": pg.current_purpose()}

    return PurposeMiddleware(app, verifier=check, claim_header="x-purpose")


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Everything the server and the library log, at every level."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield stream
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_every_refused_claim_is_recorded_under_uvicorn_and_no_output_holds_it(
    configured: pg.Policy, tmp_path: Path, logs: io.StringIO, spans: Any
) -> None:
    audit = tmp_path / "audit.jsonl"
    pg.configure(audit_log=audit)
    clock = Clock()
    check = verifier(clock)
    used = sign()
    plan = [  # (path, claim, expected outcome)
        ("/orders/1", used, "purpose:audit"),
        ("/orders/1", used, "403:replayed"),
        ("/invoices/1", sign(route=ORDERS), "403:wrong_route"),
        ("/orders/2", sign(route=ORDERS), "purpose:audit"),
        ("/orders/1", sign(audience="billing-svc"), "403:wrong_audience"),
        ("/orders/1", sign(now=T0 - 61), "403:expired"),
        ("/orders/1", sign(now=T0 + 60), "403:not_yet_valid"),
        ("/orders/1", v1("audit", T0), "403:unsupported_version"),
        ("/orders/1", sign_claim("audit", OLD_KEY, audience="orders-svc", now=T0), "403:untrusted"),
    ]
    with (
        structlog.testing.capture_logs() as captured,
        serve(make_app(check), log_config=None, log_level="trace", access_log=True) as url,
        httpx.Client(base_url=url) as client,
    ):
        responses = [
            client.get(path, headers={"baggage": f"purposeguard.purpose={claim}"})
            for path, claim, _ in plan
        ]
        header = client.get("/orders/1", headers={"x-purpose": used})  # replayed again, by header
        pg.testing.flush()
    outcomes = [
        f"purpose:{r.json()['purpose']}" if r.status_code == 200 else
        f"{r.status_code}:{r.json()['reason']}"
        for r in [*responses, header]
    ]  # fmt: skip
    assert outcomes == [expected for _, _, expected in plan] + ["403:replayed"]
    refused = [o.split(":")[1] for o in outcomes if o.startswith("403")]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    rejected = [r for r in records if r.get("event") == "purposeguard.claim_rejected"]
    assert refused == [r["reason"] for r in rejected]
    assert refused == [e["reason"] for e in captured if e["event"] == "purposeguard.claim_rejected"]
    assert {"/orders/{order_id}", "/invoices/{invoice_id}"} == {r["route"] for r in rejected}
    assert "GET /orders/1" in logs.getvalue()  # the server's log was captured
    span_text = repr(
        [(s.attributes, [e.attributes for e in s.events]) for s in spans.get_finished_spans()]
    )
    outputs = [audit.read_text(), logs.getvalue(), repr(captured), span_text]
    outputs += [r.text for r in [*responses, header]]
    for _, claim, _ in plan:
        secret = claim.rsplit(":", 1)[1]  # the signature, the most unique part
        for text in outputs:
            assert claim not in text
            assert secret not in text
