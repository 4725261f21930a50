"""The WSGI middleware: Flask under a real threaded werkzeug server, and a bare WSGI app."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import requests
from flask import Flask, Response, jsonify, request, stream_with_context
from tests._servers import (
    PROXY,
    SERVER_HOST,
    STRANGER,
    TRUSTED,
    client_from,
    proxy_to,
    require_loopback_aliases,
)
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server

import purposeguard as pg
from purposeguard.middleware import HMACClaimVerifier, TrustedPeers, purposes, sign_claim
from purposeguard.middleware._claims import _BODIES
from purposeguard.middleware.wsgi import PurposeWSGIMiddleware, init_flask

KEY = "wsgi-test-key-0123456789"
AUD = "wsgi-svc"
ECHO = ("recruitment", "audit", "inquiry")


def make_app(holder: dict[str, Any]) -> Flask:
    @pg.accessor(collected_for=("recruitment",))
    def load_applicant(applicant_id: str) -> dict[str, str]:
        return {"id": applicant_id}

    holder["load"] = load_applicant  # reached through holder, cleared at teardown
    app = Flask("wsgi_test")

    @app.errorhandler(pg.PurposeViolation)
    def _violation(exc: pg.PurposeViolation) -> tuple[Any, int]:
        return jsonify(error="purpose_violation", reason=exc.reason), 403

    @app.get("/echo/<int:n>")
    def echo(n: int) -> Any:
        return jsonify(n=n, purpose=pg.current_purpose())

    @app.get("/applicant/<applicant_id>")
    @purposes("recruitment.selection", "marketing")
    def applicant(applicant_id: str) -> Any:
        return jsonify(holder["load"](applicant_id))

    @app.get("/stream")
    @purposes("inquiry")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for _ in range(3):
                yield f"{pg.current_purpose()}\n"

        return Response(stream_with_context(chunks()), mimetype="text/plain")

    @app.get("/open")
    def open_route() -> Any:
        return jsonify(purpose=pg.current_purpose())

    init_flask(
        app, routes={"/echo/<int:n>": list(ECHO)}, verifier=HMACClaimVerifier(KEY, audience=AUD)
    )
    return app


def signed(purpose: str) -> str:
    return sign_claim(purpose, KEY, audience=AUD)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    holder: dict[str, Any] = {}
    srv = make_server("127.0.0.1", 0, make_app(holder), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()
    thread.join(10)
    holder.clear()
    gc.collect()  # the app's accessor must not outlive this module (guards are process-wide)
    assert not any("load_applicant" in g.name for g in pg.testing.guards())


def test_concurrent_requests_with_mixed_purposes_show_no_cross_talk(
    server: str, configured: pg.Policy
) -> None:
    def one(i: int) -> tuple[str, dict[str, Any]]:
        claimed = ECHO[i % 3]
        with requests.get(
            f"{server}/echo/{i}",
            headers={"baggage": f"purposeguard.purpose={signed(claimed)}"},
            timeout=30,
        ) as response:
            return claimed, response.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(150)))
    assert [{"n": i, "purpose": ECHO[i % 3]} for i in range(150)] == [r for _, r in results]


def test_flask_route_blocks_a_wrong_purpose_use_end_to_end(
    server: str, configured: pg.Policy
) -> None:
    with httpx.Client(base_url=server) as client:
        allowed = client.get("/applicant/7")
        denied = client.get(
            "/applicant/7",
            headers={"baggage": f"purposeguard.purpose={signed('marketing')}"},
        )
    assert (allowed.status_code, allowed.json()) == (200, {"id": "7"})
    assert (denied.status_code, denied.json()["error"]) == (403, "purpose_violation")


def test_streamed_body_is_iterated_under_the_route_purpose(
    server: str, configured: pg.Policy
) -> None:
    with httpx.Client(base_url=server) as client:
        assert client.get("/stream").text == "inquiry\ninquiry\ninquiry\n"


@pytest.mark.parametrize(
    ("claim", "status", "reason"),
    [
        ("audit", 403, "untrusted"),
        ("x" * 600, 400, "oversized"),
        ("%FF", 400, "malformed"),
        ("SIGN:tax", 403, "not_allowed"),
    ],
)
def test_bad_claims_are_refused_without_echo(
    server: str, configured: pg.Policy, claim: str, status: int, reason: str
) -> None:
    if claim.startswith("SIGN:"):
        claim = signed(claim[5:])
    with httpx.Client(base_url=server) as client:
        response = client.get("/echo/1", headers={"baggage": f"purposeguard.purpose={claim}"})
    assert (status, reason) == (response.status_code, response.json()["reason"])
    assert claim not in response.text


def test_undeclared_route_has_no_purpose(server: str, configured: pg.Policy) -> None:
    with httpx.Client(base_url=server) as client:
        assert client.get("/open").json() == {"purpose": None}


def test_unknown_flask_rule_is_a_clear_error(configured: pg.Policy) -> None:
    app = Flask("bad")
    app.add_url_rule("/x", "x", lambda: "x")
    init_flask(app, routes={"/y": "audit"})
    with pytest.raises(pg.ConfigurationError, match="'/y' matches no Flask rule"):
        app.test_client().get("/x")


def test_bare_wsgi_app_routes_by_path_template(configured: pg.Policy) -> None:
    seen: list[str | None] = []

    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(pg.current_purpose())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    app = PurposeWSGIMiddleware(
        inner, routes={"/items/{id}": "inquiry", "POST /items/{id}": "audit"}, default="security"
    )

    def call(method: str, path: str) -> None:
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": None}
        body = app(environ, lambda status, headers: None)
        list(body)
        body.close()  # type: ignore[attr-defined]

    call("GET", "/items/3")
    call("POST", "/items/3")
    call("GET", "/other")
    assert seen == ["inquiry", "audit", "security"]
    assert pg.current_purpose() is None


# --- who is trusted: REMOTE_ADDR, werkzeug's ProxyFix and a real proxy in front ------------------


def peers_app(verifier: TrustedPeers, proxy_fix: bool) -> Flask:
    app = Flask("wsgi_peers")

    @app.get("/orders/<order_id>")
    @purposes("inquiry", "audit")
    def order(order_id: str) -> Any:
        return jsonify(purpose=pg.current_purpose(), remote_addr=request.remote_addr)

    init_flask(app, verifier=verifier)
    if proxy_fix:  # outermost: it rewrites REMOTE_ADDR before the middleware sees the request
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    return app


@contextlib.contextmanager
def werkzeug_server(app: Flask) -> Iterator[str]:
    srv = make_server(SERVER_HOST, 0, app, threaded=True)  # listening once made
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{SERVER_HOST}:{srv.server_port}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)


def outcome(response: httpx.Response) -> str:
    if response.status_code == 200:
        return f"purpose:{response.json()['purpose']}"
    assert response.content in _BODIES.values()
    return f"{response.status_code}:{response.json()['reason']}"


CLAIM = {"baggage": "purposeguard.purpose=audit"}


def test_proxyfix_rewriting_remote_addr_does_not_make_a_spoofer_trusted(
    configured: pg.Policy,
) -> None:
    require_loopback_aliases()
    app = peers_app(TrustedPeers([TRUSTED]), proxy_fix=True)
    with (
        werkzeug_server(app) as url,
        client_from(SERVER_HOST, url) as local,
        client_from(TRUSTED, url) as peer,
    ):
        spoofed = local.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
        direct = peer.get("/orders/1", headers=CLAIM)
    assert outcome(spoofed) == "403:forwarded"
    assert (outcome(direct), direct.json()["remote_addr"]) == ("purpose:audit", TRUSTED)


@pytest.mark.parametrize("proxy_fix", [True, False], ids=["proxyfix", "plain"])
def test_with_the_proxy_named_flask_trusts_the_caller_behind_it(
    configured: pg.Policy, proxy_fix: bool
) -> None:
    require_loopback_aliases()
    app = peers_app(TrustedPeers([TRUSTED], proxies=[PROXY]), proxy_fix=proxy_fix)
    with werkzeug_server(app) as url, proxy_to(url) as front:
        with client_from(TRUSTED, front) as peer, client_from(STRANGER, front) as stranger:
            through = peer.get("/orders/1", headers=CLAIM)
            refused = stranger.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
        with client_from(SERVER_HOST, url) as local:
            bypass = local.get("/orders/1", headers={**CLAIM, "x-forwarded-for": TRUSTED})
    assert outcome(through) == "purpose:audit"
    # ProxyFix's rewrite is what Flask reports; the middleware reads the server's own peer
    assert through.json()["remote_addr"] == (TRUSTED if proxy_fix else PROXY)
    assert outcome(refused) == "403:untrusted"
    assert outcome(bypass) == "403:untrusted"  # from loopback, which is no named proxy
