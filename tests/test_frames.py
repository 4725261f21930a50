"""Frames: a violation's ``code`` names the application's line, found by module name, whatever
serves the app; and the channel of a read is still told from the frame that made it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import linecache
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import httpx
import pydantic
import pytest
import uvicorn
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from flask import Flask, jsonify
from tests.conftest import CANARY
from werkzeug.serving import make_server

import purposeguard as pg
from purposeguard._frames import caller_location, channel_of
from purposeguard.middleware import purposes
from purposeguard.middleware.asgi import PurposeMiddleware
from purposeguard.middleware.wsgi import init_flask

Events = list[dict[str, Any]]


def here() -> int:
    """The line this is called from."""
    return sys._getframe(1).f_lineno


def as_module(name: str, source: str, filename: str | None = None, **names: Any) -> dict[str, Any]:
    """Run ``source`` as the module ``name`` (from a file that need not exist); its namespace."""
    namespace = {"__name__": name, **names}
    exec(compile(source, filename or f"/nowhere/{name}.py", "exec"), namespace)
    return namespace


CALL = "def call(f):\n    return f()\n"  # ``call(f)`` runs ``f`` from line 2 of the module


def source_line(code: str | None) -> tuple[str, str]:
    """(file, source text) of an event's ``code``."""
    assert code is not None
    filename, line = code.rsplit(":", 1)
    return filename, linecache.getline(filename, int(line)).strip()


def codes(events: Events) -> list[tuple[str, str] | None]:
    return [None if e["code"] is None else source_line(e["code"]) for e in events]


def recruitment_accessor() -> Callable[[str], str]:
    @pg.accessor(collected_for=("recruitment",))
    def email_of(applicant_id: str) -> str:
        return CANARY

    return email_of


# --- the skip rule ---------------------------------------------------------------------------------


def test_an_installed_app_under_the_standard_librarys_directory_is_the_application(
    configured: pg.Policy, isolated: None
) -> None:
    """The review's probe: without a virtualenv, site-packages lies in the stdlib's directory."""
    pg.configure(mode="monitor")
    views = Path(contextlib.__file__).resolve().parent / "site-packages" / "myapp" / "views.py"
    module = as_module(
        "myapp.views",
        "def view():\n    # an installed app's view\n    return email_of('a1')\n",
        str(views),
        email_of=recruitment_accessor(),
    )
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        module["view"]()
    assert [f"{views}:3"] == [e["code"] for e in events]


@pytest.mark.parametrize(
    "module",
    [
        "fastapi_users.router",
        "purposeguard_ext",
        "purposeguard_ext.views",
        "pydantic_extra_app",
        "djangoapp.views",
        "asyncio_helpers",
        "myapp.fastapi",  # a library's name inside the application
        "purposeguard.cli._demo",  # shipped in purposeguard, but the user's part
        "__main__",
    ],
)
def test_a_module_that_only_looks_like_a_library_is_the_application(module: str) -> None:
    namespace = as_module(module, CALL, caller_location=caller_location)
    assert f"/nowhere/{module}.py:2" == namespace["call"](caller_location)


@pytest.mark.parametrize(
    "module",
    [
        "purposeguard",
        "purposeguard.models",
        "wrapt.wrappers",
        "pydantic.main",
        "pydantic_core.core_schema",
        "structlog._base",
        "fastapi.routing",
        "starlette.routing",
        "anyio.to_thread",
        "flask.app",
        "werkzeug.wrappers",
        "django.core.handlers.base",
        "asgiref.sync",
        "json.encoder",
        "contextlib",
        "importlib._bootstrap",
    ],
)
def test_library_and_standard_library_frames_are_passed_over(module: str) -> None:
    namespace = as_module(module, CALL)
    location, line = namespace["call"](caller_location), here()
    assert f"{__file__}:{line}" == location


@pytest.mark.parametrize(
    "module",
    [
        "uvicorn.protocols.http.h11_impl",
        "gunicorn.workers.sync",
        "socketserver",
        "httpx._transports.asgi",
        "starlette.testclient",
        "werkzeug.test",
        "django.test.client",
        "_pytest.python",
        "asyncio.events",
    ],
)
def test_a_runner_ends_the_walk_with_no_location(module: str) -> None:
    """What lies below a server, test client, test runner or event loop started the process."""
    namespace = as_module(module, CALL)
    assert namespace["call"](caller_location) is None


def test_a_read_by_a_method_dataclasses_generated_names_the_line_that_called_it(
    configured: pg.Policy, isolated: None
) -> None:
    @pg.guarded
    @dataclasses.dataclass
    class Applicant:
        email: Annotated[str, pg.CollectedFor("recruitment")]

    pg.configure(mode="monitor")
    first, second = Applicant(CANARY), Applicant(CANARY)
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert first == second
    assert events
    assert {("eq", (__file__, "assert first == second"))} == {
        (e["channel"], source_line(e["code"])) for e in events
    }


def test_a_read_with_no_application_frame_on_its_stack_has_no_location(
    configured: pg.Policy, isolated: None
) -> None:
    email_of = recruitment_accessor()
    pg.configure(mode="monitor")
    with (
        pg.purpose("marketing"),
        pg.testing.capture_violations() as events,
        ThreadPoolExecutor(1) as pool,
    ):
        assert pool.submit(email_of, "a1").result() == CANARY  # the pool's thread calls it
    assert [e["code"] for e in events] == [None]


# --- end to end: FastAPI in process and under uvicorn ---------------------------------------------


def build_fastapi() -> FastAPI:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    email_of = recruitment_accessor()
    app = FastAPI()

    @app.exception_handler(pg.PurposeViolation)
    async def _refused(request: Request, exc: pg.PurposeViolation) -> JSONResponse:
        return JSONResponse({"error": "purpose_violation"}, status_code=403)

    @app.get("/handler")
    @purposes("marketing")
    async def handler() -> dict[str, int]:
        applicant = Applicant(email=CANARY)
        return {"length": len(applicant.email)}

    @app.get("/sync-handler")
    @purposes("marketing")
    def sync_handler() -> dict[str, int]:  # FastAPI runs it in a worker thread
        applicant = Applicant(email=CANARY)
        return {"length": len(applicant.email)}

    def check_email(applicant_id: str = "a1") -> None:  # a sync dependency: a worker thread too
        email_of(applicant_id)

    @app.get("/dependency", dependencies=[Depends(check_email)])
    @purposes("marketing")
    async def dependency() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/response-model", response_model=Applicant)
    @purposes("marketing")
    async def response_model() -> Any:
        return Applicant(email=CANARY)  # not read here: FastAPI's serialization is the use

    app.add_middleware(PurposeMiddleware)
    return app


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on 127.0.0.1 (ephemeral port), in a thread."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # uvicorn offers no startup event to wait on
        assert thread.is_alive(), "uvicorn failed to start"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.asynccontextmanager
async def fastapi_client(served: str) -> AsyncIterator[httpx.AsyncClient]:
    app = build_fastapi()
    if served == "in process":
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    else:
        with uvicorn_serving(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                yield client


FASTAPI_READS = {
    "/handler": (__file__, 'return {"length": len(applicant.email)}'),
    "/sync-handler": (__file__, 'return {"length": len(applicant.email)}'),
    "/dependency": (__file__, "email_of(applicant_id)"),
    # The handler has returned: no application frame is on the stack while FastAPI serializes its
    # result, and the framework is never the offender, so the event names no line.
    "/response-model": None,
}


@pytest.mark.parametrize("served", ["in process", "uvicorn"])
async def test_fastapi_violations_name_the_handler_or_dependency_never_the_framework(
    served: str, configured: pg.Policy, isolated: None
) -> None:
    seen: dict[str, tuple[int, list[tuple[str, str] | None]]] = {}
    async with fastapi_client(served) as client:
        for route in FASTAPI_READS:
            with pg.testing.capture_violations() as events:
                response = await client.get(route)
            seen[route] = (response.status_code, codes(events))
    assert {route: (403, [code]) for route, code in FASTAPI_READS.items()} == seen


# --- end to end: Flask and Django -------------------------------------------------------------------


def build_flask() -> Flask:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    @pg.guarded
    @dataclasses.dataclass
    class Record:
        email: Annotated[str, pg.CollectedFor("recruitment")]

    app = Flask("frames_test")

    @app.errorhandler(pg.PurposeViolation)
    def _refused(exc: pg.PurposeViolation) -> tuple[Any, int]:
        return jsonify(error="purpose_violation"), 403

    @app.get("/view")
    @purposes("marketing")
    def view() -> Any:
        applicant = Applicant(email=CANARY)
        return jsonify(length=len(applicant.email))

    @app.get("/jsonify")
    @purposes("marketing")
    def serialized() -> Any:
        # Flask's JSON provider reads the record through dataclasses.asdict
        return jsonify(Record(CANARY))

    init_flask(app)
    return app


@contextlib.contextmanager
def flask_get(served: str) -> Iterator[Callable[[str], int]]:
    app = build_flask()
    if served == "test client":
        client = app.test_client()
        yield lambda route: client.get(route).status_code
        return
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            yield lambda route: http.get(route).status_code
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.mark.parametrize("served", ["test client", "werkzeug server"])
def test_flask_violations_name_the_view(served: str, configured: pg.Policy, isolated: None) -> None:
    seen = {}
    with flask_get(served) as get:
        for route in ("/view", "/jsonify"):
            with pg.testing.capture_violations() as events:
                status = get(route)
            seen[route] = (status, codes(events))
    assert {
        "/view": (403, [(__file__, "return jsonify(length=len(applicant.email))")]),
        "/jsonify": (403, [(__file__, "return jsonify(Record(CANARY))")]),
    } == seen


DJANGO: dict[str, Any] = {}


def django_view(request: HttpRequest) -> JsonResponse:
    applicant = DJANGO["Applicant"](email=CANARY)
    return JsonResponse({"length": len(applicant.email)})


async def django_async_view(request: HttpRequest) -> JsonResponse:
    await asyncio.sleep(0)
    return JsonResponse({"length": len(DJANGO["email_of"]("a1"))})


urlpatterns = [path("view/", django_view), path("async/", django_async_view)]


@pytest.fixture
def django_app(configured: pg.Policy, isolated: None) -> Iterator[None]:
    """This module's URLs behind purposeguard's middleware (settings may be another module's)."""
    if not settings.configured:
        settings.configure(SECRET_KEY="test-only", ALLOWED_HOSTS=["testserver"], USE_TZ=True)
        import django

        django.setup()
    from django.test import override_settings

    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    DJANGO.update(Applicant=Applicant, email_of=recruitment_accessor())
    with override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["purposeguard.middleware.django.PurposeGuardMiddleware"],
        PURPOSEGUARD_WEB={"routes": {"view/": "marketing", "async/": "marketing"}},
    ):
        yield
    DJANGO.clear()


def test_django_violations_name_the_view(django_app: None) -> None:
    from django.test import Client

    pg.configure(mode="monitor")  # Django would turn a raised violation into a 500 page
    client = Client()
    seen = {}
    for route in ("/view/", "/async/"):
        with pg.testing.capture_violations() as events:
            status = client.get(route).status_code
        seen[route] = (status, codes(events))
    assert {
        "/view/": (200, [(__file__, 'return JsonResponse({"length": len(applicant.email)})')]),
        "/async/": (
            200,
            [(__file__, 'return JsonResponse({"length": len(DJANGO["email_of"]("a1"))})')],
        ),
    } == seen


# --- channels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "channel"),
    [
        ("pydantic.type_adapter", "dump"),
        ("pydantic_core", "dump"),
        ("pydantic_settings.main", "attribute"),
        ("myapp.serializers", "attribute"),
    ],
)
def test_pydantic_dumps_are_recognised_by_module_name(module: str, channel: str) -> None:
    namespace = as_module(module, "import sys\ndef dump_python():\n    return sys._getframe()\n")
    assert channel == channel_of(namespace["dump_python"]())


def test_a_read_from_no_frame_is_an_attribute_read() -> None:
    assert channel_of(None) == "attribute"


def test_channels_of_a_guarded_dataclass(configured: pg.Policy, isolated: None) -> None:
    @pg.guarded
    @dataclasses.dataclass(frozen=True)
    class Applicant:
        email: Annotated[str, pg.CollectedFor("recruitment")]

    pg.configure(mode="monitor")
    record = Applicant(CANARY)
    uses: dict[str, Callable[[], object]] = {
        "asdict": lambda: dataclasses.asdict(record),
        "astuple": lambda: dataclasses.astuple(record),
        "eq": lambda: record == Applicant(CANARY),
        "hash": lambda: hash(record),
        "dump": lambda: pydantic.TypeAdapter(Applicant).dump_python(record),
    }
    seen = {}
    for expected, use in uses.items():
        with pg.purpose("marketing"), pg.testing.capture_violations() as events:
            use()
        seen[expected] = {e["channel"] for e in events}
    assert {channel: {channel} for channel in uses} == seen
