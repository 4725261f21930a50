"""The outbound helper: purpose baggage only to internal destinations."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import requests
from fastapi import FastAPI
from opentelemetry import baggage, context, propagate
from tests._servers import serve

import purposeguard as pg
from purposeguard.middleware import BAGGAGE_KEY, Caller, ClaimRefused, HMACClaimVerifier, purposes
from purposeguard.middleware.asgi import PurposeMiddleware
from purposeguard.outbound import Outbound, StripPurposePropagator

KEY = "outbound-test-key-0123456789"


def sent_headers(out: Outbound, url: str) -> httpx.Headers:
    seen: list[httpx.Headers] = []
    transport = httpx.MockTransport(lambda r: seen.append(r.headers) or httpx.Response(200))
    hooks = out.httpx_hooks()
    with httpx.Client(transport=transport, event_hooks=hooks) as client:  # type: ignore[arg-type]
        client.get(url, headers={"baggage": "a=1,purposeguard.purpose=forged"})
    return seen[0]


def test_purpose_goes_to_internal_destinations_only(configured: pg.Policy) -> None:
    out = Outbound(internal=["*.svc.cluster.local", "billing:8080"])
    with pg.purpose("audit"):
        internal = sent_headers(out, "http://hr.svc.cluster.local/x")
        port_ok = sent_headers(out, "http://billing:8080/x")
        wrong_port = sent_headers(out, "http://billing:9090/x")
        external = sent_headers(out, "https://partner.example.com/x")
    assert internal["baggage"] == "a=1,purposeguard.purpose=audit"
    assert port_ok["baggage"] == "a=1,purposeguard.purpose=audit"
    assert "a=1" == wrong_port["baggage"] == external["baggage"]


def test_no_active_purpose_sends_none(configured: pg.Policy) -> None:
    out = Outbound(internal=["internal"])
    assert sent_headers(out, "http://internal/")["baggage"] == "a=1"


def test_signed_claim_verifies_on_the_receiving_side(configured: pg.Policy) -> None:
    out = Outbound(internal={"internal": "internal-svc"}, key=KEY)
    with pg.purpose("inquiry"):
        value = sent_headers(out, "http://internal/")["baggage"].split("purposeguard.purpose=")[1]
    assert value == unquote(value)  # a claim is sent unescaped
    assert value.startswith("v2:inquiry:")
    receiver = HMACClaimVerifier(KEY, audience="internal-svc")
    assert receiver(value, Caller({})) == "inquiry"
    with pytest.raises(ClaimRefused) as refused:
        HMACClaimVerifier(KEY, audience="other-svc")(value, Caller({}))
    assert refused.value.reason == "wrong_audience"


def test_each_destination_gets_a_fresh_claim_for_its_own_service(configured: pg.Policy) -> None:
    out = Outbound(internal={"billing:8080": "billing-svc", "*.hr.svc": "hr-svc"}, key=KEY)
    with pg.purpose("audit"):
        claims = [out.claim(u) for u in ("http://billing:8080/a", "http://billing:8080/a")]
        hr = out.claim("https://people.hr.svc/x")
        external = out.claim("https://partner.example.com/x")
    assert [c.split(":")[3] for c in claims if c] == ["billing-svc", "billing-svc"]
    assert claims[0] != claims[1]  # a new nonce each time
    assert hr is not None
    assert hr.split(":")[3] == "hr-svc"
    assert external is None


def test_a_signer_is_told_the_destination_service(configured: pg.Policy) -> None:
    seen: list[tuple[str, str | None]] = []

    def signer(purpose: str, audience: str | None) -> str:
        seen.append((purpose, audience))
        return purpose

    mapped = Outbound(internal={"billing": "billing-svc"}, signer=signer)
    listed = Outbound(internal=["billing"], signer=signer)
    with pg.purpose("audit"):
        mapped.claim("http://billing/")
        listed.claim("http://billing/")
    assert seen == [("audit", "billing-svc"), ("audit", None)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"internal": ["billing"], "key": KEY}, "mapping from host pattern to service name"),
        ({"internal": {"billing": "not a name"}, "key": KEY}, "service name of 'billing'"),
        ({"internal": "billing"}, "not one string"),
        ({"internal": {"billing": "b"}, "key": "short"}, "at least 16 bytes"),
    ],
)
def test_signing_settings_are_checked_when_configured(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(pg.ConfigurationError, match=message):
        Outbound(**options)


def test_outbound_claims_are_accepted_by_their_service_once_and_by_no_other(
    configured: pg.Policy,
) -> None:
    def service(audience: str) -> PurposeMiddleware:
        app = FastAPI()

        @app.get("/orders/{order_id}")
        @purposes("inquiry", "audit")
        async def order(order_id: str) -> dict[str, str | None]:
            return {"purpose": pg.current_purpose()}

        return PurposeMiddleware(app, verifier=HMACClaimVerifier(KEY, audience=audience))

    sent: list[str] = []
    with serve(service("orders-svc")) as orders, serve(service("billing-svc")) as billing:
        out = Outbound(internal={orders.split("//")[1]: "orders-svc"}, key=KEY)
        hooks = out.httpx_hooks()
        hooks["request"].append(lambda r: sent.append(r.headers["baggage"]))
        with httpx.Client(event_hooks=hooks) as client, pg.purpose("audit"):  # type: ignore[arg-type]
            first = client.get(f"{orders}/orders/1")
            second = client.get(f"{orders}/orders/2")
        with httpx.Client() as plain:  # the claims, replayed by someone who saw them
            elsewhere = plain.get(f"{billing}/orders/1", headers={"baggage": sent[0]})
            again = plain.get(f"{orders}/orders/1", headers={"baggage": sent[1]})
    assert [first.json(), second.json()] == [{"purpose": "audit"}] * 2
    assert (elsewhere.status_code, elsewhere.json()["reason"]) == (403, "wrong_audience")
    assert (again.status_code, again.json()["reason"]) == (403, "replayed")


def test_requests_adapter_strips_for_external_and_sets_for_internal(configured: pg.Policy) -> None:
    out = Outbound(internal=["internal"], claim_header="x-purpose")
    prepared = []
    for url in ("http://internal/a", "http://external/a"):
        req = requests.Request("GET", url, headers={"x-purpose": "forged"}).prepare()
        with pg.purpose("audit"):
            out.apply(req.headers, req.url)
        prepared.append(dict(req.headers))
    assert prepared[0] == {"baggage": "purposeguard.purpose=audit", "x-purpose": "audit"}
    assert prepared[1] == {}
    session = out.requests_session()
    assert type(session.get_adapter("https://x")).__name__ == "PurposeAdapter"
    session.close()


def test_otel_propagator_keeps_the_purpose_out_of_baggage(configured: pg.Policy) -> None:
    ctx = baggage.set_baggage("purposeguard.purpose", "audit")
    ctx = baggage.set_baggage("tenant", "t1", ctx)
    carrier: dict[str, str] = {}
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator

    prop = CompositePropagator([W3CBaggagePropagator(), StripPurposePropagator()])
    prop.inject(carrier, context=ctx)
    assert carrier["baggage"] == "tenant=t1"
    extracted = prop.extract({"baggage": "purposeguard.purpose=audit,tenant=t1"})
    assert baggage.get_baggage("purposeguard.purpose", extracted) is None
    assert baggage.get_baggage("tenant", extracted) == "t1"


def test_inject_runs_the_app_propagators_then_applies_the_rule(configured: pg.Policy) -> None:
    out = Outbound(internal=["internal"])
    token = context.attach(baggage.set_baggage("purposeguard.purpose", "marketing"))
    try:
        with pg.purpose("audit"):
            internal: dict[str, str] = {}
            external: dict[str, str] = {}
            out.inject(internal, "http://internal/")
            out.inject(external, "http://external/")
    finally:
        context.detach(token)
    assert internal["baggage"].endswith("purposeguard.purpose=audit")
    assert "marketing" not in internal["baggage"]
    assert "purposeguard" not in external.get("baggage", "")
    assert propagate.get_global_textmap() is not None


def test_requests_session_strips_a_forged_entry_on_the_wire(configured: pg.Policy) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(self.headers.get("baggage"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    port = srv.server_address[1]
    forged = {"baggage": "a=1,purposeguard.purpose=forged"}
    try:
        with pg.purpose("audit"):
            internal = Outbound(internal=[f"127.0.0.1:{port}"]).requests_session()
            external = Outbound(internal=["billing"]).requests_session()
            internal.get(f"http://127.0.0.1:{port}/", headers=forged, timeout=10).close()
            external.get(f"http://127.0.0.1:{port}/", headers=forged, timeout=10).close()
            internal.close()
            external.close()
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
    assert received == ["a=1,purposeguard.purpose=audit", "a=1"]


def test_wrapping_the_baggage_propagator_keeps_a_claim_from_its_parser_and_log(
    configured: pg.Policy, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    bad = 'purposeguard.purpose=canary"secret,tenant=t1'
    plain = W3CBaggagePropagator().extract({"baggage": bad})
    assert "canary" in caplog.text  # OTel's own parser logs a malformed entry verbatim
    caplog.clear()
    prop = StripPurposePropagator(W3CBaggagePropagator())
    extracted = prop.extract({"baggage": bad})
    assert "canary" not in caplog.text
    assert baggage.get_all(extracted) == {"tenant": "t1"}
    assert baggage.get_baggage("tenant", plain) == "t1"
    carrier: dict[str, str] = {}
    prop.inject(carrier, context=baggage.set_baggage(BAGGAGE_KEY, "audit", extracted))
    assert carrier == {"baggage": "tenant=t1"}
    assert prop.fields == W3CBaggagePropagator().fields
