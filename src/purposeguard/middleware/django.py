"""Django middleware (sync and async capable): each URL runs under a purpose it declares.

Add ``"purposeguard.middleware.django.PurposeGuardMiddleware"`` near the top of ``MIDDLEWARE``
and configure it with a ``PURPOSEGUARD_WEB`` setting::

    PURPOSEGUARD_WEB = {
        "routes": {"applicants/<int:pk>/": "recruitment.selection",   # a route, as declared
                   "GET notices": ("marketing", "audit")},            # or a URL name
        "default": None,            # purpose of URLs that declare none
        "verifier": "myapp.claims.verify",  # a callable or its dotted path
        "claim_header": None, "baggage": True, "untrusted": "reject",
    }

Views can instead be marked with :func:`purposes`. The purpose is set before the rest of the
middleware chain and the view run, so it covers template rendering and serialization; streamed
responses are iterated under it too, and it is reset when the request ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    # Django ships no type information (django-stubs is not a dependency)
    from django.conf import settings  # type: ignore[import-untyped]
    from django.http import (  # type: ignore[import-untyped]
        HttpRequest,
        HttpResponseBase,
        JsonResponse,
    )
    from django.urls import (  # type: ignore[import-untyped]
        Resolver404,
        URLPattern,
        URLResolver,
        get_resolver,
        resolve,
    )
    from django.utils.module_loading import import_string  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "purposeguard.middleware.django needs Django; install it with "
        "pip install 'purposeguard[django]'"
    ) from exc

from .._context import _current
from .._state import state
from ..exceptions import ConfigurationError
from ._claims import (
    ClaimReader,
    Rejection,
    RoutePurposes,
    declared_on,
    purposes,
    split_key,
    validate_declarations,
)
from ._verify import Caller

__all__ = ["SETTING", "PurposeGuardMiddleware", "purposes"]

#: The Django setting that configures the middleware.
SETTING = "PURPOSEGUARD_WEB"
_OPTIONS = {"routes", "default", "verifier", "claim_header", "baggage", "untrusted",
            "max_claim_length"}  # fmt: skip
_UNCHECKED: Any = object()


def _known_routes(patterns: Any, prefix: str = "", namespace: str = "") -> Iterator[str]:
    """Every route string and URL name the urlconf declares (as ResolverMatch spells them)."""
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _known_routes(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)
            if p.name:
                yield namespace + p.name


def _pairs(request: HttpRequest, names: frozenset[str]) -> Iterator[tuple[str, str]]:
    meta = request.META
    for name in names:
        value = meta.get("HTTP_" + name.upper().replace("-", "_"))
        if value is not None:
            yield name, value


def _caller(request: HttpRequest, route: str) -> Caller:
    headers = {k.lower(): v for k, v in request.headers.items()}
    addr = request.META.get("REMOTE_ADDR")  # under ASGI, the server's (maybe rewritten) client
    port = str(request.META.get("REMOTE_PORT") or "0")
    return Caller(headers, (addr, int(port) if port.isdigit() else 0) if addr else None,
                  request.META, route)  # fmt: skip


def _stream(content: Iterator[Any], purpose: str | None) -> Iterator[Any]:
    while True:
        token = _current.set(purpose)
        try:
            item = next(content)
        except StopIteration:
            return
        finally:
            _current.reset(token)
        yield item


async def _astream(content: AsyncIterator[Any], purpose: str | None) -> AsyncIterator[Any]:
    while True:
        token = _current.set(purpose)
        try:
            item = await content.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _current.reset(token)
        yield item


class PurposeGuardMiddleware:
    """Set the purpose each URL declares for the whole request; refuse bad purpose claims with a
    400/403 JSON response and a ``purposeguard.claim_rejected`` event."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        options: Mapping[str, Any] = getattr(settings, SETTING, None) or {}
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigurationError(
                f"settings.{SETTING}: unknown option(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(sorted(_OPTIONS))}"
            )
        verifier = options.get("verifier")
        if isinstance(verifier, str):
            verifier = import_string(verifier)
        self._reader = ClaimReader(
            verifier=verifier,
            header=options.get("claim_header"),
            baggage=options.get("baggage", True),
            untrusted=options.get("untrusted", "reject"),
            **(
                {"max_length": options["max_claim_length"]} if "max_claim_length" in options else {}
            ),
        )
        default = options.get("default")
        self._default = None if default is None else RoutePurposes.of(default, "default").default
        self._table: dict[str, dict[str | None, RoutePurposes]] = {}
        self._all: dict[str, RoutePurposes] = {}
        for key, spec in (options.get("routes") or {}).items():
            decl = RoutePurposes.of(spec, f"settings.{SETTING} route {key!r}")
            method, route = split_key(key)
            self._table.setdefault(route, {})[method] = decl
            self._all[key] = decl
        if self._default is not None:
            self._all["(default)"] = RoutePurposes.of(self._default)
        self._urls_checked = False
        self._checked: Any = _UNCHECKED
        if state.compiled is not None:
            self._check()

    def _check(self) -> None:
        validate_declarations(self._all, f"settings.{SETTING}")
        self._checked = state.compiled

    def _check_urls(self, request: HttpRequest) -> None:
        known = set(_known_routes(get_resolver(getattr(request, "urlconf", None)).url_patterns))
        missing = sorted(set(self._table) - known)
        if missing:
            raise ConfigurationError(
                f"settings.{SETTING}: {', '.join(map(repr, missing))} matches no URL route or "
                "name; spell routes as in urls.py (for example 'applicants/<int:pk>/')"
            )
        self._urls_checked = True

    def _decide(self, request: HttpRequest) -> str | Rejection | None:
        if not self._urls_checked:
            self._check_urls(request)
        if state.compiled is not self._checked:
            self._check()
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return self._default
        label = match.route
        table = self._table.get(match.route) or self._table.get(match.view_name)
        decl = None
        if table is not None:
            decl = table.get(request.method) or table.get(None)
        if decl is None:
            func = match.func
            decl = declared_on(func) or declared_on(getattr(func, "view_class", None))
        if decl is None:
            return self._default
        reader = self._reader
        outcome = reader.decide(
            decl, _pairs(request, reader.names), lambda: _caller(request, label)
        )
        if isinstance(outcome, Rejection):
            outcome.record(label, "django")
        return outcome

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self.__acall__(request)
        purpose = self._decide(request)
        if isinstance(purpose, Rejection):
            return JsonResponse(purpose.body(), status=purpose.status)
        token = _current.set(purpose)
        try:
            response = self.get_response(request)
        finally:
            _current.reset(token)
        return self._wrap(response, purpose)

    async def __acall__(self, request: HttpRequest) -> Any:
        purpose = self._decide(request)
        if isinstance(purpose, Rejection):
            return JsonResponse(purpose.body(), status=purpose.status)
        token = _current.set(purpose)
        try:
            response = await self.get_response(request)
        finally:
            _current.reset(token)
        return self._wrap(response, purpose)

    @staticmethod
    def _wrap(response: HttpResponseBase, purpose: str | None) -> HttpResponseBase:
        # a streamed body is iterated by the server after this middleware has returned
        if getattr(response, "streaming", False):
            content = response.streaming_content
            if getattr(response, "is_async", False):
                response.streaming_content = _astream(aiter(content), purpose)
            else:
                response.streaming_content = _stream(iter(content), purpose)
        return response
