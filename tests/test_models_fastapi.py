"""Guarded models as FastAPI request and response models, through a real app and HTTP client.

The request's purpose is set by a small pure ASGI middleware around the whole app, so that it
also covers the response's serialization (which runs after the endpoint returns).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from tests.conftest import CANARY

import purposeguard as pg

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

ROUTES = {
    "/applicants": "recruitment.selection",
    "/campaign": "marketing",
    "/campaign-redacted": "marketing",
}


def with_route_purposes(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Any, send: Any) -> None:
        name = ROUTES.get(scope.get("path", ""))
        if name is None:
            await app(scope, receive, send)
            return
        async with pg.purpose(name):
            await app(scope, receive, send)

    return middleware


def build_app() -> ASGIApp:
    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]

    class RedactedApplicant(Applicant):
        purposeguard_on_denied = "redact"

    store: dict[str, Applicant] = {}
    app = FastAPI()

    async def create(applicant: Applicant) -> Applicant:
        assert "@" in applicant.email  # the endpoint reads under the route's purpose
        store[applicant.applicant_id] = applicant
        return applicant

    async def campaign() -> Applicant:
        return store["a1"]  # never read here: the response serialization is the use

    async def campaign_redacted() -> RedactedApplicant:
        return RedactedApplicant.model_construct(**vars(store["a1"]))

    # the models are local to this function, so FastAPI gets the annotations as objects
    create.__annotations__ = {"applicant": Applicant, "return": Applicant}
    app.post("/applicants", response_model=Applicant)(create)
    app.get("/campaign", response_model=Applicant)(campaign)
    app.get("/campaign-redacted", response_model=RedactedApplicant)(campaign_redacted)
    return with_route_purposes(app)


@pytest.fixture
def client(configured: pg.Policy, isolated: None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_request_and_response_models_under_the_route_purpose(
    client: httpx.AsyncClient,
) -> None:
    async with client:
        with pg.testing.capture_violations() as events:
            response = await client.post(
                "/applicants", json={"applicant_id": "a1", "email": CANARY}
            )
    assert (
        response.status_code,
        response.json(),
    ) == (200, {"applicant_id": "a1", "email": CANARY})
    assert events == []


async def test_a_response_under_a_denied_purpose_fails_without_the_value(
    client: httpx.AsyncClient,
) -> None:
    async with client:
        await client.post("/applicants", json={"applicant_id": "a1", "email": CANARY})
        with pg.testing.capture_violations() as events:
            response = await client.get("/campaign")
    assert response.status_code == 500
    assert CANARY not in response.text
    assert [(e["purpose"], e["channel"], e["reason"]) for e in events] == [
        ("marketing", "dump", "not_allowed")
    ]


async def test_a_redacting_response_model_answers_with_null(client: httpx.AsyncClient) -> None:
    async with client:
        await client.post("/applicants", json={"applicant_id": "a1", "email": CANARY})
        with pg.testing.capture_violations() as events:
            response = await client.get("/campaign-redacted")
    assert (
        response.status_code,
        response.json(),
    ) == (200, {"applicant_id": "a1", "email": None})
    assert sorted({e["channel"] for e in events}) == ["dump"]


async def test_monitor_mode_answers_and_records(client: httpx.AsyncClient) -> None:
    pg.configure(mode="monitor")
    async with client:
        await client.post("/applicants", json={"applicant_id": "a1", "email": CANARY})
        with pg.testing.capture_violations() as events:
            response = await client.get("/campaign")
    assert (response.status_code, response.json()["email"]) == (200, CANARY)
    assert events
    assert {("monitor", False)} == {(e["mode"], e["enforced"]) for e in events}


async def test_a_rejected_request_body_answers_422_without_the_guarded_input(
    client: httpx.AsyncClient,
) -> None:
    async with client:
        with pg.testing.capture_violations() as events:
            missing_id = await client.post("/applicants", json={"email": CANARY})
            not_a_string = await client.post(
                "/applicants", json={"applicant_id": "a1", "email": [CANARY]}
            )
    assert (missing_id.status_code, not_a_string.status_code) == (422, 422)
    assert CANARY not in missing_id.text + not_a_string.text
    assert [e["loc"] for e in missing_id.json()["detail"]] == [["body", "applicant_id"]]
    assert [e["loc"] for e in not_a_string.json()["detail"]] == [["body", "email"]]
    assert events == []  # a rejected input is not a use
