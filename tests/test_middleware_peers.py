"""TrustedPeers: which address a request comes from, in isolation and under a real uvicorn.

uvicorn's ``--proxy-headers`` is on by default and trusts 127.0.0.1: it replaces the ASGI scope's
``client`` with an address from ``X-Forwarded-For``, which the caller writes. These tests run the
real server that way (``forwarded_allow_ips`` is set to its default explicitly, so that a
``FORWARDED_ALLOW_IPS`` in the environment cannot change them) and show that the rewrite never
makes a caller trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from hypothesis import assume, given
from hypothesis import strategies as st
from tests._servers import (
    PROXY,
    SERVER_HOST,
    STRANGER,
    TRUSTED,
    client_from,
    proxy_to,
    require_loopback_aliases,
    serve,
)

import purposeguard as pg
from purposeguard.middleware import Caller, ClaimRefused, TrustedPeers, purposes
from purposeguard.middleware._claims import _BODIES
from purposeguard.middleware._peers import caller_address, parse_address
from purposeguard.middleware.asgi import PurposeMiddleware
from purposeguard.testing import RecordingSink

UVICORN_DEFAULT = {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"}
NO_REWRITE = {"proxy_headers": False}


def address_of(client: str, headers: dict[str, str], proxies: tuple[str, ...] = ()) -> str:
    """The resolved caller address, or ``refused:<reason>``."""
    networks = TrustedPeers([], proxies=proxies)._proxies
    try:
        return str(caller_address(Caller(headers, (client, 5000)), networks))
    except ClaimRefused as refused:
        return f"refused:{refused.reason}"


@pytest.mark.parametrize(
    ("client", "headers", "expected"),
    [
        ("10.0.0.2", {}, "10.0.0.2"),
        ("::ffff:10.0.0.2", {}, "10.0.0.2"),  # a dual-stack socket's view of an IPv4 peer
        ("10.0.0.2", {"x-forwarded-for": "10.0.0.9"}, "refused:forwarded"),
        ("10.0.0.2", {"forwarded": "for=10.0.0.9"}, "refused:forwarded"),
        ("10.0.0.2", {"x-real-ip": "10.0.0.9"}, "refused:forwarded"),
        ("10.0.0.2", {"true-client-ip": "10.0.0.9"}, "refused:forwarded"),
        ("unix-socket", {}, "refused:untrusted"),
    ],
)
def test_with_no_proxy_named_any_forwarding_header_is_refused(
    client: str, headers: dict[str, str], expected: str
) -> None:
    assert expected == address_of(client, headers)


PROXIES = ("10.0.0.3", "10.0.1.0/24")


@pytest.mark.parametrize(
    ("client", "headers", "expected"),
    [
        # the walk: from the right, past named proxies, to the first other address
        ("10.0.0.3", {"x-forwarded-for": "10.0.0.2"}, "10.0.0.2"),
        ("10.0.0.3", {"x-forwarded-for": "6.6.6.6, 10.0.0.2"}, "10.0.0.2"),
        ("10.0.0.3", {"x-forwarded-for": "garbage, 10.0.0.2, 10.0.1.7"}, "10.0.0.2"),
        ("10.0.0.3", {"x-forwarded-for": "10.0.0.2:4711"}, "10.0.0.2"),
        ("10.0.0.3", {"forwarded": 'for="[2001:db8::1]:4711";proto=https'}, "2001:db8::1"),
        ("10.0.0.3", {"forwarded": "for=6.6.6.6, for=10.0.0.2;by=10.0.0.3"}, "10.0.0.2"),
        ("10.0.0.3", {"x-real-ip": "10.0.0.2"}, "10.0.0.2"),
        (
            "10.0.0.3",
            {"x-forwarded-for": "6.6.6.6, 10.0.0.2", "x-real-ip": "10.0.0.2"},
            "10.0.0.2",
        ),
        ("10.0.0.3", {"x-forwarded-for": "10.0.0.2", "forwarded": "for=10.0.0.2"}, "10.0.0.2"),
        # a peer that is no named proxy is the caller, whatever it writes
        ("10.0.0.9", {"x-forwarded-for": "10.0.0.2"}, "10.0.0.9"),
        # what can't be known is refused
        ("10.0.0.2", {"x-forwarded-for": "10.0.0.2"}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"x-forwarded-for": "10.0.0.2, 10.0.0.3"}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"x-forwarded-for": "unknown"}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"x-forwarded-for": ""}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"forwarded": "for=_hidden"}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"forwarded": "proto=https"}, "refused:forwarding_ambiguous"),
        ("10.0.0.3", {"x-forwarded-for": "10.0.1.5"}, "refused:forwarding_ambiguous"),
        (
            "10.0.0.3",
            {"x-forwarded-for": "10.0.0.2", "forwarded": "for=10.0.0.8"},
            "refused:forwarding_ambiguous",
        ),
        (
            "10.0.0.3",
            {"x-forwarded-for": "10.0.0.2", "x-real-ip": "10.0.0.8"},
            "refused:forwarding_ambiguous",
        ),
        (
            "10.0.0.3",
            {"x-forwarded-for": "10.0.0.2", "cf-connecting-ip": "10.0.0.3"},
            "refused:forwarding_ambiguous",
        ),
    ],
)
def test_with_proxies_named_the_chain_is_walked_from_the_right(
    client: str, headers: dict[str, str], expected: str
) -> None:
    assert expected == address_of(client, headers, PROXIES)


@given(
    written=st.lists(
        st.one_of(
            st.ip_addresses().map(str),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=",")),
        ),
        max_size=6,
    ),
    real=st.ip_addresses(v=4),
)
def test_whatever_a_caller_writes_it_cannot_choose_the_address_it_is_taken_for(
    written: list[str], real: ipaddress.IPv4Address
) -> None:
    # The caller writes any X-Forwarded-For; two named proxies append what they saw.
    assume(not any(real in ipaddress.ip_network(p) for p in PROXIES))
    chain = [*written, str(real), "10.0.1.9"]
    result = address_of("10.0.0.3", {"x-forwarded-for": ", ".join(chain)}, PROXIES)
    # the only other outcome: the caller wrote the peer's address, which looks like a rewrite
    expected = {str(real)}
    if any(parse_address(w) == parse_address("10.0.0.3") for w in written):
        expected = {"refused:forwarding_ambiguous"}
    assert result in expected


def test_peers_and_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(pg.ConfigurationError, match="IP addresses or networks"):
        TrustedPeers(["not-an-ip"])
    with pytest.raises(pg.ConfigurationError, match="proxies takes a list"):
        TrustedPeers(["10.0.0.1"], proxies="10.0.0.3")


# --- under a real uvicorn ------------------------------------------------------------------------


def make_app(verifier: Any, **options: Any) -> PurposeMiddleware:
    app = FastAPI()

    @app.get("/orders/{order_id}")
    @purposes("inquiry", "audit")
    async def order(order_id: str, request: Request) -> dict[str, Any]:
        client = request.client
        return {"purpose": pg.current_purpose(), "client": client.host if client else None}

    @app.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        return {"client": request.client.host if request.client else None}

    return PurposeMiddleware(app, verifier=verifier, **options)


@pytest.fixture(autouse=True)
def _aliases() -> None:
    require_loopback_aliases()


@pytest.fixture
def sink(configured: pg.Policy) -> RecordingSink:
    out = RecordingSink()
    pg.configure(audit_log=out)
    return out


CLAIM = {"baggage": "purposeguard.purpose=audit"}


def reasons(sink: RecordingSink) -> list[str]:
    pg.testing.flush()
    return [r["reason"] for r in sink.records if r["event"] == "purposeguard.claim_rejected"]


def outcome(response: Any) -> str:
    """``purpose:<id>`` for an answered request, ``<status>:<reason>`` for a refused claim."""
    if response.status_code == 200:
        return f"purpose:{response.json()['purpose']}"
    assert response.content in _BODIES.values()  # a fixed body: no part of the claim or headers
    return f"{response.status_code}:{response.json()['reason']}"


@pytest.fixture
def only_direct() -> Iterator[str]:
    with serve(make_app(TrustedPeers([TRUSTED])), **UVICORN_DEFAULT) as url:
        yield url


@pytest.mark.parametrize(
    "forged",
    [
        {"x-forwarded-for": TRUSTED},
        {"forwarded": f"for={TRUSTED}"},
        {"x-real-ip": TRUSTED},
    ],
)
def test_spoofed_forwarded_for_from_loopback_does_not_make_a_caller_trusted(
    only_direct: str, sink: RecordingSink, forged: dict[str, str]
) -> None:
    with client_from(SERVER_HOST, only_direct) as local, client_from(TRUSTED, only_direct) as peer:
        if "x-forwarded-for" in forged:  # uvicorn did rewrite the address the app sees
            assert local.get("/whoami", headers=forged).json() == {"client": TRUSTED}
        spoofed = local.get("/orders/1", headers={**CLAIM, **forged})
        direct = peer.get("/orders/1", headers=CLAIM)
        stranger = local.get("/orders/1", headers=CLAIM)
    assert outcome(spoofed) == "403:forwarded"
    assert outcome(direct) == "purpose:audit"
    assert outcome(stranger) == "403:untrusted"
    assert reasons(sink) == ["forwarded", "untrusted"]


@pytest.mark.parametrize("server", [UVICORN_DEFAULT, NO_REWRITE], ids=["rewriting", "plain"])
def test_with_the_proxy_named_a_real_forwarding_chain_makes_the_caller_trusted(
    sink: RecordingSink, server: dict[str, Any]
) -> None:
    verifier = TrustedPeers([TRUSTED], proxies=[PROXY])
    with serve(make_app(verifier), **server) as url, proxy_to(url) as front:
        with client_from(TRUSTED, front) as peer, client_from(STRANGER, front) as stranger:
            through = peer.get("/orders/1", headers=CLAIM)
            untrusted = stranger.get("/orders/1", headers=CLAIM)
            forged = stranger.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
        with client_from(SERVER_HOST, url) as local:
            bypass = local.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
    assert outcome(through) == "purpose:audit"
    assert through.json()["client"] == PROXY  # the app sees the proxy; the verifier, the chain
    assert outcome(untrusted) == "403:untrusted"
    assert outcome(forged) == "403:untrusted"  # the proxy appended the stranger's own address
    # straight to the server from loopback: uvicorn rewrites the peer from the forged header,
    # which is seen and refused; without the rewrite the peer is loopback, no trusted address
    expected = "403:forwarding_ambiguous" if server == UVICORN_DEFAULT else "403:untrusted"
    assert outcome(bypass) == expected
    assert reasons(sink) == ["untrusted", "untrusted", expected[4:]]


def test_a_server_that_rewrites_the_peer_from_the_chain_is_refused_not_believed(
    sink: RecordingSink,
) -> None:
    # The proxy connects from 127.0.0.1, which uvicorn trusts by default: uvicorn replaces the
    # peer with the forwarded address, so the middleware no longer sees the proxy. Run uvicorn
    # with --no-proxy-headers (as docs/web.md says) and the same chain is believed.
    verifier = TrustedPeers([TRUSTED], proxies=[SERVER_HOST])
    results = []
    for server in (UVICORN_DEFAULT, NO_REWRITE):
        with (
            serve(make_app(verifier), **server) as url,
            proxy_to(url, source=SERVER_HOST) as front,
            client_from(TRUSTED, front) as peer,
        ):
            results.append(outcome(peer.get("/orders/1", headers=CLAIM)))
    assert results == ["403:forwarding_ambiguous", "purpose:audit"]
    assert reasons(sink) == ["forwarding_ambiguous"]


def test_untrusted_ignore_runs_a_forwarded_claim_under_the_route_default(
    sink: RecordingSink,
) -> None:
    ignoring = make_app(TrustedPeers([TRUSTED]), untrusted="ignore")
    with serve(ignoring, **UVICORN_DEFAULT) as url, client_from(SERVER_HOST, url) as local:
        response = local.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
    assert outcome(response) == "purpose:inquiry"
    assert reasons(sink) == []
