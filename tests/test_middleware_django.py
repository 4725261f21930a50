"""The Django middleware through Django's test client, sync and async."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.conf import settings

from purposeguard.middleware import HMACClaimVerifier, TrustedPeers, purposes, sign_claim

KEY = "django-test-key-0123456789"
AUD = "django-svc"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["purposeguard.middleware.django.PurposeGuardMiddleware"],
        INSTALLED_APPS=[],
        USE_TZ=True,
        PURPOSEGUARD_WEB={
            "routes": {"echo/<int:n>/": ["recruitment", "audit"], "named-open": "security"},
            "verifier": HMACClaimVerifier(KEY, audience=AUD),
        },
    )
    import django

    django.setup()

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

import purposeguard as pg  # noqa: E402

HOLDER: dict[str, Any] = {}


def echo(request: HttpRequest, n: int) -> JsonResponse:
    return JsonResponse({"n": n, "purpose": pg.current_purpose()})


@purposes("recruitment.selection", "marketing")
def applicant(request: HttpRequest, pk: int) -> JsonResponse:
    try:
        return JsonResponse(HOLDER["load"](pk))
    except pg.PurposeViolation as exc:
        return JsonResponse({"error": "purpose_violation", "reason": exc.reason}, status=403)


@purposes("inquiry")
async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"purpose": pg.current_purpose()})


@purposes("inquiry")
def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[str]:
        for _ in range(3):
            yield f"{pg.current_purpose()}\n"

    return StreamingHttpResponse(chunks())


@purposes("audit")
async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[str]:
        for _ in range(3):
            yield f"{pg.current_purpose()}\n"

    return StreamingHttpResponse(chunks())


def open_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"purpose": pg.current_purpose()})


urlpatterns = [
    path("echo/<int:n>/", echo),
    path("applicant/<int:pk>/", applicant),
    path("async/", async_view),
    path("stream/", stream),
    path("astream/", astream),
    path("open/", open_view, name="named-open"),
    path("plain/", echo, kwargs={"n": 0}),
]


@pytest.fixture(autouse=True, scope="module")
def _accessor() -> Iterator[None]:
    @pg.accessor(collected_for=("recruitment",))
    def load(pk: int) -> dict[str, int]:
        return {"id": pk}

    HOLDER["load"] = load
    yield
    HOLDER.clear()
    del load
    gc.collect()  # guards are process-wide: this one must not outlive the module
    assert not any(g.name.endswith("load") and "django" in g.name for g in pg.testing.guards())


def signed(purpose: str, route: str | None = None) -> str:
    return sign_claim(purpose, KEY, audience=AUD, route=route)


def bag(claim: str) -> dict[str, str]:
    return {"HTTP_BAGGAGE": f"purposeguard.purpose={claim}"}


def abag(claim: str) -> dict[str, str]:
    return {"baggage": f"purposeguard.purpose={claim}"}


def test_sync_routes_run_under_their_purpose_and_claims_pick_among_them(
    configured: pg.Policy,
) -> None:
    client = Client()
    assert client.get("/echo/1/").json() == {"n": 1, "purpose": "recruitment"}
    assert client.get("/echo/2/", **bag(signed("audit"))).json() == {
        "n": 2,
        "purpose": "audit",
    }
    assert client.get("/open/").json() == {"purpose": "security"}  # by URL name
    assert client.get("/plain/").json() == {"n": 0, "purpose": None}
    assert pg.current_purpose() is None


def test_wrong_purpose_use_is_blocked_end_to_end(configured: pg.Policy) -> None:
    client = Client()
    assert client.get("/applicant/5/").json() == {"id": 5}
    denied = client.get("/applicant/5/", **bag(signed("marketing")))
    assert (denied.status_code, denied.json()["error"]) == (403, "purpose_violation")


@pytest.mark.parametrize(
    ("claim", "status", "reason"),
    [("audit", 403, "untrusted"), ("y" * 700, 400, "oversized"), ("SIGN:tax", 403, "not_allowed")],
)
def test_bad_claims_get_json_errors_without_echo(
    configured: pg.Policy, claim: str, status: int, reason: str
) -> None:
    if claim.startswith("SIGN:"):
        claim = signed(claim[5:])
    response = Client().get("/echo/1/", **bag(claim))
    assert (status, reason) == (response.status_code, response.json()["reason"])
    assert claim not in response.content.decode()


def test_sync_streaming_body_is_iterated_under_the_purpose(configured: pg.Policy) -> None:
    response = Client().get("/stream/")
    assert b"".join(response.streaming_content) == b"inquiry\ninquiry\ninquiry\n"


async def test_async_client_routes_and_streams_under_the_purpose(configured: pg.Policy) -> None:
    client = AsyncClient()
    assert (await client.get("/async/")).json() == {"purpose": "inquiry"}
    assert (await client.get("/echo/3/", headers=abag(signed("audit")))).json() == {
        "n": 3,
        "purpose": "audit",
    }
    response = await client.get("/astream/")
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert body == b"audit\naudit\naudit\n"
    refused = await client.get("/echo/3/", headers=abag("audit"))
    assert (refused.status_code, refused.json()["reason"]) == (403, "untrusted")
    assert pg.current_purpose() is None


def test_a_route_bound_claim_counts_on_its_django_route_only(configured: pg.Policy) -> None:
    client = Client()
    ok = client.get("/echo/1/", **bag(signed("audit", route="echo/<int:n>/")))
    other = client.get("/echo/1/", **bag(signed("audit", route="applicant/<int:pk>/")))
    assert ok.json() == {"n": 1, "purpose": "audit"}
    assert (other.status_code, other.json()["reason"]) == (403, "wrong_route")


def peers_client(**verifier: Any) -> Client:
    options = {**settings.PURPOSEGUARD_WEB, "verifier": TrustedPeers(["10.0.0.2"], **verifier)}
    with override_settings(PURPOSEGUARD_WEB=options):
        client = Client()
        client.get("/plain/")  # the handler builds the middleware now, under these settings
    return client


def outcome(response: Any) -> str:
    if response.status_code == 200:
        return f"purpose:{response.json()['purpose']}"
    assert "10.0.0" not in response.content.decode()
    return f"{response.status_code}:{response.json()['reason']}"


@pytest.mark.parametrize(
    ("proxies", "meta", "expected"),
    [
        ((), {"REMOTE_ADDR": "10.0.0.2"}, "purpose:audit"),
        ((), {"REMOTE_ADDR": "10.0.0.9"}, "403:untrusted"),
        # REMOTE_ADDR as a server (or a middleware) that rewrites it from the header leaves it
        ((), {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "10.0.0.2"}, "403:forwarded"),
        (
            ("10.0.0.3",),
            {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "10.0.0.2"},
            "403:forwarding_ambiguous",
        ),
        # a real chain: the named proxy connected, and appended the caller
        (
            ("10.0.0.3",),
            {"REMOTE_ADDR": "10.0.0.3", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 10.0.0.2"},
            "purpose:audit",
        ),
        (
            ("10.0.0.3",),
            {"REMOTE_ADDR": "10.0.0.3", "HTTP_X_FORWARDED_FOR": "10.0.0.2, 10.0.0.9"},
            "403:untrusted",
        ),
    ],
)
def test_django_trusts_remote_addr_only_as_the_forwarding_rule_allows(
    configured: pg.Policy, proxies: tuple[str, ...], meta: dict[str, str], expected: str
) -> None:
    client = peers_client(proxies=proxies)
    assert outcome(client.get("/echo/1/", **bag("audit"), **meta)) == expected
