"""Pure ASGI middleware for Starlette and FastAPI: each route runs under a purpose it declares.

``BaseHTTPMiddleware`` is not used: it runs the endpoint in another task, so a purpose set around
it would not reach the endpoint. Here the purpose is set inside the matched route's own ASGI app,
so it covers dependencies, the endpoint, response serialization, streaming and background tasks
(which Starlette runs after the body is sent, still inside the route), and it is reset when the
route returns.

Usage::

    app = FastAPI()
    app.add_middleware(PurposeMiddleware, routes={"/applicants/{id}": "recruitment.selection"})

or wrap the app itself (cheaper: FastAPI's ``add_middleware`` stack costs more than this
middleware does), ``app = PurposeMiddleware(FastAPI(), routes=...)``; or mark endpoints with :func:`purposes` and add the middleware without ``routes``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

try:
    from starlette.routing import Host, Mount
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "purposeguard.middleware.asgi needs Starlette; install it with "
        "pip install 'purposeguard[fastapi]'"
    ) from exc

from pydantic_core import PydanticSerializationError

from .._context import _current
from .._guard import raised
from .._state import state
from ..exceptions import ConfigurationError, PurposeViolation
from ..models import violation_of
from ._claims import (
    MAX_CLAIM_LENGTH,
    ClaimReader,
    Rejection,
    RoutePurposes,
    declared_on,
    purposes,
    route_declarations,
    split_key,
    validate_declarations,
)
from ._verify import Caller, Verifier

__all__ = ["PurposeMiddleware", "purposes", "require_purpose"]

#: Scope key under which the middleware leaves its claim reader for routes and dependencies.
READER_KEY = "purposeguard.claims"
_NO_CLAIMS = ClaimReader()  # no verifier: every claim is refused as untrusted
_UNCHECKED: Any = object()
_JSON = [(b"content-type", b"application/json")]


def _claim_headers(scope: Scope, names: frozenset[bytes]) -> list[tuple[str, str]]:
    """The headers that can carry a claim, decoded; usually none, so nothing is decoded."""
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in scope.get("headers") or ()
        if name in names
    ]


def _caller(scope: Scope, route: str | None) -> Caller:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]},{text}" if key in headers else text
    client = scope.get("client")  # the server may have rewritten it: see TrustedPeers
    return Caller(headers, tuple(client) if client else None, scope, route)


async def _refuse(rejection: Rejection, scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        # close before accept: the server answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008,
                    "reason": f"purpose_claim_rejected:{rejection.reason}"})  # fmt: skip
        return
    body = rejection.body_bytes()
    headers = [*_JSON, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _PurposeRoute:
    """Replaces a route's ``app``: decides the purpose, then runs the route under it."""

    __slots__ = ("app", "by_method", "label")

    def __init__(self, app: ASGIApp, by_method: dict[str | None, RoutePurposes], label: str):
        self.app, self.by_method, self.label = app, by_method, label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        decl = self.by_method.get(scope.get("method")) or self.by_method.get(None)
        if decl is None:
            await self.app(scope, receive, send)
            return
        reader: ClaimReader = scope.get(READER_KEY) or _NO_CLAIMS
        names = reader.byte_names
        outcome: str | Rejection = decl.default
        for name, _ in scope.get("headers") or ():  # most requests carry no claim at all
            if name in names:
                pairs = _claim_headers(scope, names)
                outcome = reader.decide(decl, pairs, lambda: _caller(scope, self.label))
                break
        if isinstance(outcome, Rejection):
            outcome.record(self.label, "asgi")
            await _refuse(outcome, scope, send)
            return
        token = _current.set(outcome)
        kept: list[PurposeViolation | None] = [None]
        keeping = raised.set(kept)
        try:
            await self.app(scope, receive, send)
        except PydanticSerializationError as exc:
            # A guarded response model refused during serialization: pydantic wraps the
            # violation; raise it as itself so the app's PurposeViolation handlers see it.
            violation = violation_of(exc, kept)
            if violation is exc:
                raise
            raise violation from None
        finally:
            raised.reset(keeping)
            _current.reset(token)


def _walk(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)
        elif isinstance(route, Host):
            yield from _walk(route.routes, prefix)
        elif hasattr(route, "path") and hasattr(route, "app"):
            yield prefix + route.path, route


class PurposeMiddleware:
    """Run each request under the purpose its route declares, and refuse bad purpose claims.

    - ``routes``: ``{"/path/{param}": "purpose"}`` or ``{"GET /path": ("default", "other")}``,
      with paths spelled as the routes declare them (mounts included: ``"/api/items/{id}"``).
      Endpoints marked with :func:`purposes` need no entry.
    - ``default``: the purpose of requests to routes that declare none (``None``: no purpose, so
      every guarded use there is denied). A claim on such a route is ignored.
    - ``verifier``, ``claim_header``, ``baggage``, ``untrusted``, ``max_claim_length``: how inbound
      claims are read and who may send them (see :class:`ClaimReader`); without a verifier every
      claim gets a 403.

    Declarations are checked against the configured policy when the middleware is built, at
    lifespan startup (a bad one fails startup) and whenever the policy changes; a route or
    purpose that does not exist raises :class:`~purposeguard.ConfigurationError` /
    :class:`~purposeguard.PolicyError` naming it.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Mapping[str, str | Sequence[str]] | None = None,
        default: str | None = None,
        verifier: Verifier | None = None,
        claim_header: str | None = None,
        baggage: bool = True,
        untrusted: Literal["reject", "ignore"] = "reject",
        max_claim_length: int = MAX_CLAIM_LENGTH,
    ) -> None:
        self.app = app
        self._declared, self._default, self._all = route_declarations(
            routes, default, "PurposeMiddleware"
        )
        self._reader = ClaimReader(
            verifier=verifier,
            header=claim_header,
            baggage=baggage,
            untrusted=untrusted,
            max_length=max_claim_length,
        )
        self._installed: Any = None
        self._checked: Any = _UNCHECKED
        if state.compiled is not None:
            self._check()

    def _check(self) -> None:
        compiled = state.compiled
        validate_declarations(self._all, "PurposeMiddleware")
        self._checked = compiled

    def _install(self, app: Any) -> None:
        """Wrap the ``app`` of every declared route of the Starlette app, once."""
        routes = getattr(app, "routes", None)
        if routes is None:
            if self._declared:
                raise ConfigurationError(
                    "PurposeMiddleware(routes=...) needs a Starlette or FastAPI app "
                    "(scope['app'].routes); mark routes with purposes() inside one"
                )
            self._installed = app
            return
        pending = {split_key(k): v for k, v in self._declared.items()}
        found: list[tuple[Any, dict[str | None, RoutePurposes], str]] = []
        for path, route in _walk(routes):
            by_method: dict[str | None, RoutePurposes] = {}
            mark = declared_on(getattr(route, "endpoint", None))
            if mark is not None:
                by_method[None] = mark
                self._all[path] = mark
            for (method, key_path), decl in list(pending.items()):
                if key_path == path:
                    by_method[method] = decl
                    del pending[(method, key_path)]
            if by_method:
                found.append((route, by_method, path))
        if pending:
            known = sorted({p for p, _ in _walk(routes)})
            missing = ", ".join(repr(f"{m} {p}" if m else p) for m, p in pending)
            raise ConfigurationError(
                f"PurposeMiddleware: {missing} matches no route of the app; "
                f"spell paths as the routes declare them: {', '.join(known)}"
            )
        self._check()
        for route, by_method, label in found:
            inner = route.app.app if isinstance(route.app, _PurposeRoute) else route.app
            route.app = _PurposeRoute(inner, by_method, label)
        self._installed = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        app = scope.get("app", self.app)  # wrapped around the app itself, there is no "app" yet
        if self._installed is not app:
            self._install(app)
        if state.compiled is not self._checked:
            self._check()
        scope[READER_KEY] = self._reader
        # always a token of its own: require_purpose() dependencies set the purpose without one,
        # and this reset is what ends theirs with the request
        token = _current.set(self._default)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def checked_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    self._install(scope.get("app", self.app))
                except ConfigurationError as exc:  # PolicyError included
                    message = {"type": "lifespan.startup.failed", "message": str(exc)}
            await send(message)

        await self.app(scope, receive, checked_send)


def require_purpose(*ids: str) -> Any:
    """A FastAPI dependency that runs the request under one of ``ids`` (the first by default).

    Use it as ``dependencies=[require_purpose("recruitment")]`` on a route or router. FastAPI
    resolves dependencies before the endpoint and serializes after it, in the same task, so the
    purpose covers both. Claims are read with the :class:`PurposeMiddleware`'s settings when it
    is installed (which also resets the purpose at the end of the request); without it every
    claim is refused and the purpose lasts until the request's task ends. A refused claim raises
    ``HTTPException`` (400/403) whose ``detail`` is the same JSON object the middleware sends.
    """
    try:
        from fastapi import Depends
        from fastapi.exceptions import HTTPException, WebSocketException
        from starlette.requests import HTTPConnection
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "require_purpose needs FastAPI; install it with pip install 'purposeguard[fastapi]'"
        ) from exc

    decl = RoutePurposes.of(ids, "require_purpose()")
    validate_declarations({"require_purpose": decl}, "require_purpose")
    checked: list[Any] = [state.compiled]

    async def purpose_for_request(connection: HTTPConnection) -> str:
        if state.compiled is not checked[0]:
            validate_declarations({"require_purpose": decl}, "require_purpose")
            checked[0] = state.compiled
        scope = connection.scope
        reader: ClaimReader = scope.get(READER_KEY) or _NO_CLAIMS
        template = getattr(scope.get("route"), "path", None)
        outcome = reader.decide(
            decl, _claim_headers(scope, reader.byte_names), lambda: _caller(scope, template)
        )
        if isinstance(outcome, Rejection):
            outcome.record(template or "require_purpose", "fastapi")
            if scope["type"] == "websocket":
                raise WebSocketException(1008, f"purpose_claim_rejected:{outcome.reason}")
            raise HTTPException(outcome.status, detail=outcome.body())
        _current.set(outcome)  # the middleware's token (or the task's end) undoes this
        return outcome

    # the annotation is a string under ``from __future__ import annotations`` and names a local
    # import, which FastAPI could not resolve: give it the class itself
    purpose_for_request.__annotations__["connection"] = HTTPConnection
    return Depends(purpose_for_request)
