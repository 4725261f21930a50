"""The ASGI middleware under a real uvicorn server on 127.0.0.1, driven by httpx."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import structlog
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, field_serializer
from starlette.websockets import WebSocket
from tests._servers import serve
from tests.conftest import CANARY

import purposeguard as pg
from purposeguard.middleware import HMACClaimVerifier, purposes, sign_claim
from purposeguard.middleware._claims import _BODIES
from purposeguard.middleware.asgi import PurposeMiddleware, require_purpose
from purposeguard.outbound import StripPurposePropagator
from purposeguard.testing import RecordingSink

KEY = b"asgi-test-key-0123456789"
AUD = "asgi-svc"
ECHO = ("recruitment", "audit", "inquiry", "marketing.events")


class Events:
    """What the server did after answering, and a condition to wait on it (no polling)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.in_flight = 0

    def add(self, seen: list[Any], item: Any) -> None:
        with self.cond:
            seen.append(item)
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "the server never got there"


EVENTS = Events()


class Tracker:
    """Outermost ASGI app: knows when the server has entirely finished with each request
    (FastAPI's own telemetry included, which records metrics after the body is sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan lasts as long as the server
            await self.app(scope, receive, send)
            return
        with EVENTS.cond:
            EVENTS.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with EVENTS.cond:
                EVENTS.in_flight -= 1
                EVENTS.cond.notify_all()


def make_app(seen: dict[str, list[Any]]) -> FastAPI:
    """The app under test. Guards are process-wide and FastAPI caches endpoints for good, so the
    accessor is reached only through ``seen``, which the fixtures clear: it must not outlive the
    test and refuse another module's policy."""

    @pg.accessor(collected_for=("recruitment",))
    def load_applicant(applicant_id: str) -> dict[str, str]:
        return {"id": applicant_id, "email": "a@example.com"}

    seen["load_applicant"] = [load_applicant]

    class Echo(BaseModel):
        n: int
        before: str | None
        after: str | None
        serialized_under: str = ""

        @field_serializer("serialized_under")
        def _under(self, value: str) -> str | None:
            return pg.current_purpose()  # proves serialization runs under the route's purpose

    app = FastAPI()

    @app.exception_handler(pg.PurposeViolation)
    async def _violation(request: Request, exc: pg.PurposeViolation) -> JSONResponse:
        return JSONResponse({"error": "purpose_violation", "reason": exc.reason}, status_code=403)

    @app.get("/echo/{n}")
    async def echo(n: int) -> JSONResponse:
        before = pg.current_purpose()
        await asyncio.sleep(random.random() / 500)  # let other requests interleave
        return JSONResponse({"n": n, "before": before, "after": pg.current_purpose()})

    @app.get("/model", response_model=Echo)
    @purposes("inquiry")
    async def model() -> Echo:
        return Echo(n=0, before=None, after=None)

    @app.get("/applicant/{applicant_id}")
    @purposes("recruitment.selection", "marketing")
    def applicant(applicant_id: str) -> dict[str, str]:
        return seen["load_applicant"][0](applicant_id)  # type: ignore[no-any-return]

    @app.get("/dep", dependencies=[require_purpose("inquiry", "audit")])
    async def dep() -> dict[str, str | None]:
        return {"purpose": pg.current_purpose()}

    @app.get("/stream")
    @purposes("inquiry")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for _ in range(5):
                await asyncio.sleep(0.001)
                yield f"{pg.current_purpose()}\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/bg")
    @purposes("audit")
    async def bg(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(lambda: EVENTS.add(seen["background"], pg.current_purpose()))
        return {"ok": "yes"}

    @app.get("/open")
    async def undeclared() -> dict[str, str | None]:
        return {"purpose": pg.current_purpose()}

    @app.websocket("/ws")
    @purposes("inquiry")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(pg.current_purpose()))
        await websocket.close()

    app.add_middleware(
        PurposeMiddleware,
        routes={"/echo/{n}": list(ECHO)},
        verifier=HMACClaimVerifier(KEY, audience=AUD),
        claim_header="x-purpose",
    )

    class Probe:  # outermost: sees what is left in the context after the request
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await self.inner(scope, receive, send)
            if scope["type"] == "http":
                EVENTS.add(seen["after"], (scope["query_string"], pg.current_purpose()))

    app.add_middleware(Probe)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, list[Any]]]]:
    seen: dict[str, list[Any]] = {"background": [], "after": []}
    with serve(Tracker(make_app(seen)), log_level="warning") as url:
        yield url, seen
    seen.clear()
    gc.collect()  # the app's accessor must not outlive this module (guards are process-wide)
    assert not any("load_applicant" in g.name for g in pg.testing.guards())


@pytest.fixture(scope="module")
def fuzz_client(server: tuple[str, dict[str, list[Any]]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0]) as client:
        yield client


@pytest.fixture
def fresh_app() -> Iterator[FastAPI]:
    seen: dict[str, list[Any]] = {"background": [], "after": []}
    yield make_app(seen)
    seen.clear()


@pytest.fixture
def sink(configured: pg.Policy) -> RecordingSink:
    out = RecordingSink()
    pg.configure(audit_log=out)
    return out


def signed(purpose: str) -> str:
    """A fresh claim (each is accepted once) for this test's service."""
    return sign_claim(purpose, KEY, audience=AUD)


def baggage(claim: str) -> dict[str, str]:
    return {"baggage": f"other=1,purposeguard.purpose={claim},x=y"}


def rejected(sink: RecordingSink) -> list[dict[str, Any]]:
    pg.testing.flush()
    return [r for r in sink.records if r["event"] == "purposeguard.claim_rejected"]


async def test_1000_concurrent_requests_with_mixed_purposes_show_no_cross_talk(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, _ = server
    plan = [(i, random.choice((None, *ECHO))) for i in range(1000)]
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int, claimed: str | None) -> tuple[str | None, dict[str, Any]]:
            headers = baggage(signed(claimed)) if claimed else {}
            response = await client.get(f"/echo/{i}", headers=headers)
            assert response.status_code == 200, response.text
            return claimed, response.json()

        results = await asyncio.gather(*(one(i, c) for i, c in plan))

    for (i, _), (claimed, body) in zip(plan, results, strict=True):
        expected = claimed or ECHO[0]
        assert {"n": i, "before": expected, "after": expected} == body


def test_response_serialization_runs_under_the_route_purpose(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        body = client.get("/model").json()
    assert body["serialized_under"] == "inquiry"


def test_route_declared_purpose_blocks_a_wrong_purpose_use_end_to_end(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        allowed = client.get("/applicant/7")
        denied = client.get("/applicant/7", headers=baggage(signed("marketing")))
    assert (allowed.status_code, allowed.json()["id"]) == (200, "7")
    assert (
        denied.status_code,
        denied.json(),
    ) == (403, {"error": "purpose_violation", "reason": "not_allowed"})


def test_purpose_is_reset_when_the_request_ends(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, seen = server
    paths = ("/echo/1", "/applicant/1", "/stream", "/dep", "/open", "/bg", "/model")
    marks = [f"reset={i}".encode() for i in range(len(paths))]
    with httpx.Client(base_url=url) as client:
        for path, mark in zip(paths, marks, strict=True):
            assert client.get(f"{path}?{mark.decode()}").status_code == 200
    # the probe runs after the body is sent (and after background tasks): wait for all of ours
    EVENTS.wait_for(lambda: set(marks) <= {q for q, _ in seen["after"]})
    assert [None] * len(marks) == [p for q, p in seen["after"] if q in marks]


def test_streaming_response_runs_under_the_route_purpose_to_the_last_chunk(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client, client.stream("GET", "/stream") as response:
        lines = list(response.iter_lines())
    assert lines == ["inquiry"] * 5


def test_background_tasks_run_under_the_request_purpose(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, seen = server
    seen["background"].clear()
    with httpx.Client(base_url=url) as client:
        assert client.get("/bg").status_code == 200
    EVENTS.wait_for(lambda: bool(seen["background"]))
    assert seen["background"] == ["audit"]


def test_dependency_declares_purpose_and_accepts_only_its_own(
    server: tuple[str, dict[str, list[Any]]], sink: RecordingSink
) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        plain = client.get("/dep")
        picked = client.get("/dep", headers=baggage(signed("audit")))
        refused = client.get("/dep", headers=baggage(signed("recruitment")))
    assert plain.json() == {"purpose": "inquiry"}
    assert picked.json() == {"purpose": "audit"}
    assert (refused.status_code, refused.json()["detail"]["reason"]) == (403, "not_allowed")


def test_undeclared_route_runs_without_purpose_and_ignores_claims(
    server: tuple[str, dict[str, list[Any]]], configured: pg.Policy
) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:
        response = client.get("/open", headers=baggage(signed("audit")))
    assert response.json() == {"purpose": None}


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        (baggage("audit"), 403, "untrusted"),  # unsigned: the caller is not trusted
        ({"x-purpose": "audit"}, 403, "untrusted"),
        (baggage("v1:audit:1:AAAA"), 403, "unsupported_version"),  # the old format
        (baggage(f"v2:audit:1:{AUD}:-:{'n' * 22}:{'s' * 43}"), 403, "untrusted"),  # bad signature
        (baggage("x" * 600), 400, "oversized"),
        ({"baggage": "purposeguard.purpose=" + "a" * 9000}, 400, "oversized"),
        (baggage("%FF%FE"), 400, "malformed"),
        (baggage("%0A"), 400, "malformed"),
        ({"baggage": "purposeguard.purpose=audit,purposeguard.purpose=inquiry"}, 400, "ambiguous"),
        (baggage("SIGNED:Not.An.Id"), 400, "malformed"),
        (baggage("SIGNED:payroll"), 403, "unknown_purpose"),
        (baggage("SIGNED:tax"), 403, "not_allowed"),
    ],
)
def test_bad_claims_are_refused_recorded_and_never_echoed(
    server: tuple[str, dict[str, list[Any]]],
    sink: RecordingSink,
    headers: dict[str, str],
    status: int,
    reason: str,
) -> None:
    url, _ = server
    for name, value in list(headers.items()):
        if "SIGNED:" in value:  # sign a (possibly malformed) purpose by hand, as a peer could
            import base64
            import hashlib
            import hmac
            import secrets

            claimed = value.split("SIGNED:")[1].split(",")[0]
            body = f"v2:{claimed}:{int(time.time())}:{AUD}:-:{secrets.token_urlsafe(16)}"
            sig = base64.urlsafe_b64encode(hmac.new(KEY, body.encode(), hashlib.sha256).digest())
            headers[name] = value.replace(
                f"SIGNED:{claimed}", f"{body}:{sig.rstrip(b'=').decode()}"
            )
    with httpx.Client(base_url=url) as client:
        response = client.get("/echo/1", headers=headers)
    assert (status, reason) == (response.status_code, response.json()["reason"])
    assert response.headers["content-type"] == "application/json"
    records = rejected(sink)
    assert [reason] == [r["reason"] for r in records]
    assert records[0]["route"] == "/echo/{n}"
    claim_parts = list(headers.values())
    for part in claim_parts:
        raw = part.split("purposeguard.purpose=")[-1]
        assert raw not in response.text
        assert raw not in str(records)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    claim=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=700
    ),
    where=st.sampled_from(["baggage", "header", "both"]),
)
def test_fuzzed_claims_never_give_500_and_never_echo(
    fuzz_client: httpx.Client, configured: pg.Policy, claim: str, where: str
) -> None:
    value = claim.strip()
    headers = {}
    if where in ("baggage", "both"):
        headers["baggage"] = f"purposeguard.purpose={value}"
    if where in ("header", "both"):
        headers["x-purpose"] = value
    response = fuzz_client.get("/echo/3", headers=headers)
    # Nothing unsigned can verify, so every claim is refused, with one of the fixed bodies: the
    # body holds no part of the claim (a substring test would trip on words like "claim").
    assert response.status_code in (400, 403)
    assert response.content in _BODIES.values()
    # The server records metrics after the body is sent, with the global `random` that
    # hypothesis watches while it draws the next example: let it finish first.
    EVENTS.wait_for(lambda: EVENTS.in_flight == 0)


def test_span_event_carries_reason_and_hash_but_never_the_claim(
    configured: pg.Policy, spans: Any, fresh_app: FastAPI
) -> None:
    app = fresh_app
    transport = httpx.ASGITransport(app=app)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/echo/1", headers=baggage("audit"))

    with trace.get_tracer("test").start_as_current_span("request"):
        response = asyncio.run(call())
    assert response.status_code == 403
    events = [e for s in spans.get_finished_spans() for e in s.events]
    (event,) = [e for e in events if e.name == "purposeguard.claim_rejected"]
    assert event.attributes is not None
    assert event.attributes["purposeguard.reason"] == "untrusted"
    assert event.attributes["purposeguard.claim_length"] == 5
    assert "audit" not in {str(v) for v in event.attributes.values()}


async def _websocket(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """Drive one websocket session in-process (uvicorn here has no websocket library)."""
    incoming = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(0.01)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": "/ws", "raw_path": b"/ws",
             "root_path": "", "scheme": "ws", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80), "subprotocols": []}  # fmt: skip
    await app(scope, receive, send)
    return sent


def test_websocket_route_declares_purpose_and_refuses_bad_claims(
    configured: pg.Policy, fresh_app: FastAPI
) -> None:
    app = fresh_app
    ok = asyncio.run(_websocket(app, []))
    refused = asyncio.run(_websocket(app, [(b"baggage", b"purposeguard.purpose=inquiry")]))
    assert [m["type"] for m in ok] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert ok[1]["text"] == "inquiry"
    assert refused == [{"type": "websocket.close", "code": 1008,
             "reason": "purpose_claim_rejected:untrusted"}]  # fmt: skip


async def _lifespan(app: Any) -> dict[str, Any]:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent[0]


def test_lifespan_startup_fails_on_a_route_the_app_does_not_have() -> None:
    app = FastAPI()
    app.add_middleware(PurposeMiddleware, routes={"/nope": "audit"})
    first = asyncio.run(_lifespan(app))
    assert first["type"] == "lifespan.startup.failed"
    assert "'/nope' matches no route" in first["message"]


def test_lifespan_startup_fails_on_a_purpose_the_policy_does_not_declare(
    configured: pg.Policy,
) -> None:
    app = FastAPI()

    @app.get("/x")
    @purposes("payroll")
    def x() -> None: ...

    app.add_middleware(PurposeMiddleware)
    first = asyncio.run(_lifespan(app))
    assert first["type"] == "lifespan.startup.failed"
    assert "'payroll'" in first["message"]


def test_building_the_middleware_checks_declarations_against_the_policy(
    configured: pg.Policy,
) -> None:
    with pytest.raises(pg.PolicyError, match="route '/a' declares 'payroll'"):
        PurposeMiddleware(FastAPI(), routes={"/a": "payroll"})
    with pytest.raises(pg.ConfigurationError, match="not a purpose id"):
        PurposeMiddleware(FastAPI(), routes={"/a": "Not An Id"})


def test_guarded_response_model_serializes_under_the_route_purpose_only(
    configured: pg.Policy, isolated: None
) -> None:
    class Applicant(pg.GuardedModel):
        applicant_id: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    store = {"a1": Applicant(applicant_id="a1", email=CANARY)}
    app = FastAPI()

    @app.exception_handler(pg.PurposeViolation)
    async def _violation(request: Request, exc: pg.PurposeViolation) -> JSONResponse:
        return JSONResponse({"error": "purpose_violation", "reason": exc.reason}, status_code=403)

    @app.get("/applicants/{applicant_id}", response_model=Applicant)
    @purposes("recruitment.selection", "marketing")
    async def applicant(applicant_id: str) -> Applicant:
        return store[applicant_id]  # never read here: the response's serialization is the use

    @app.get("/undeclared/{applicant_id}", response_model=Applicant)
    @pg.purpose("recruitment")  # on the endpoint alone: serialization runs after it returns
    async def undeclared(applicant_id: str) -> Applicant:
        return store[applicant_id]

    with (
        serve(
            PurposeMiddleware(app, verifier=HMACClaimVerifier(KEY, audience=AUD)),
            log_level="critical",
        ) as url,
        # uvicorn closes the connection after an app error (the 500s): no keep-alive, so the
        # next request never races that close on a reused connection
        httpx.Client(base_url=url, limits=httpx.Limits(max_keepalive_connections=0)) as client,
        pg.testing.capture_violations() as events,
    ):
        allowed = client.get("/applicants/a1")
        refused = client.get("/applicants/a1", headers=baggage(signed("marketing")))
        bare = client.get("/undeclared/a1")
    assert (allowed.status_code, allowed.json()) == (200, {"applicant_id": "a1", "email": CANARY})
    # pydantic wraps a violation raised while serializing; on a declared route the middleware
    # raises it as itself, so the app's PurposeViolation handler answers 403. Undeclared, with
    # @pg.purpose on the endpoint only, the response has no purpose and the wrapped error is a 500.
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "purpose_violation", "reason": "not_allowed"},
    )
    assert bare.status_code == 500
    assert CANARY not in refused.text + bare.text
    assert [(e["purpose"], e["channel"], e["reason"]) for e in events] == [
        ("marketing", "dump", "not_allowed"),
        (None, "dump", "no_purpose"),
    ]


def test_refused_claims_reach_the_audit_log_and_no_log_holds_the_claim(
    configured: pg.Policy, tmp_path: Path, spans: Any
) -> None:
    audit = tmp_path / "audit.jsonl"
    pg.configure(audit_log=audit)
    # what an app with OpenTelemetry configures: its W3C baggage propagator logs a malformed
    # entry verbatim, unless the purpose entry is kept from it
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator(
            [TraceContextTextMapPropagator(), StripPurposePropagator(W3CBaggagePropagator())]
        )
    )
    handler = logging.StreamHandler(io.StringIO())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    canary_id = "canary_7f3a9e.secret"  # a well-formed purpose id the policy does not declare
    claims = [
        (CANARY, "untrusted"),  # unsigned
        (f'{CANARY}"; {CANARY}', "untrusted"),  # not a valid baggage value
        (CANARY * 20, "oversized"),
        (f"{CANARY}%0A", "malformed"),
        (signed(canary_id), "unknown_purpose"),
    ]
    app = FastAPI()

    @app.get("/items/{item_id}")
    @purposes("inquiry")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    try:
        with (
            structlog.testing.capture_logs() as logs,
            serve(
                PurposeMiddleware(
                    app, verifier=HMACClaimVerifier(KEY, audience=AUD), claim_header="x-purpose"
                ),
                log_config=None,
                log_level="trace",
                access_log=True,
            ) as url,
            httpx.Client(base_url=url) as client,
        ):
            responses = [client.get("/items/1", headers=baggage(c)) for c, _ in claims]
            responses.append(client.get("/items/1", headers={"x-purpose": CANARY}))
            pg.testing.flush()
    finally:
        propagate.set_global_textmap(previous)
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    expected = [r for _, r in claims] + ["untrusted"]
    assert expected == [r.json()["reason"] for r in responses]
    assert all(r.headers["content-type"] == "application/json" for r in responses)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    rejected = [r for r in records if r.get("event") == "purposeguard.claim_rejected"]
    assert expected == [r["reason"] for r in rejected]
    assert {"/items/{item_id}"} == {r["route"] for r in rejected}
    server_log = handler.stream.getvalue()
    assert "GET /items/1" in server_log  # the access log was captured
    assert expected == [e["reason"] for e in logs if e["event"] == "purposeguard.claim_rejected"]
    span_text = repr(
        [(s.attributes, [e.attributes for e in s.events]) for s in spans.get_finished_spans()]
    )
    for text in (
        audit.read_text(),
        server_log,
        repr(logs),
        span_text,
        *(r.text for r in responses),
    ):
        assert "canary" not in text
