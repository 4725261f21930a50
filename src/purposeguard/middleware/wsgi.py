"""WSGI middleware (Flask or any WSGI app): each route runs under a purpose it declares.

The purpose is set around the application call and again around every step of the response
iterable and its ``close()``, because a WSGI server iterates a streamed body after the application
has returned. Purposes live in a ContextVar, so each server thread (or greenlet) sees only its own.

With Flask, pass the app (``init_flask(app, ...)``): routes are matched with Flask's own URL map,
keys are rules as declared (``"/applicants/<applicant_id>"``) and views marked with
:func:`purposes` are found. With any other WSGI app, keys are path templates (``{name}`` or
``<name>`` segments) matched against ``PATH_INFO``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

from .._context import _current
from .._state import state
from ..exceptions import ConfigurationError
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

__all__ = ["PurposeWSGIMiddleware", "init_flask", "purposes"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_UNCHECKED: Any = object()

_PARAM = re.compile(r"\{([^}:]+)(?::([^}]+))?\}|<(?:([^>:]+):)?([^>]+)>")


def _template_regex(template: str) -> re.Pattern[str]:
    """``/a/{id}`` or ``/a/<int:id>`` → a regex; a ``path`` converter spans slashes."""
    out, last = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[last : m.start()]))
        converter = m.group(2) or m.group(3)
        out.append(".+" if converter == "path" else "[^/]+")
        last = m.end()
    out.append(re.escape(template[last:]))
    return re.compile("".join(out) + r"\Z")


def _environ_pairs(environ: Mapping[str, Any], names: frozenset[str]) -> Iterator[tuple[str, str]]:
    for name in names:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if value is not None:
            yield name, value


def _caller(environ: Mapping[str, Any], route: str) -> Caller:
    headers = {
        k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.lower().replace("_", "-")] = environ[key]
    addr = environ.get("REMOTE_ADDR")
    # werkzeug's ProxyFix rewrites REMOTE_ADDR from X-Forwarded-For and keeps the server's value
    # here (no header can set an environ key without the HTTP_ prefix)
    original = environ.get("werkzeug.proxy_fix.orig")
    if isinstance(original, Mapping) and isinstance(original.get("REMOTE_ADDR"), str):
        addr = original["REMOTE_ADDR"]
    port = environ.get("REMOTE_PORT") or "0"
    client = (addr, int(port) if str(port).isdigit() else 0) if addr else None
    return Caller(headers, client, environ, route)


class _PurposeIterable:
    """The response body, iterated (and closed) under the request's purpose."""

    __slots__ = ("_iter", "_purpose", "_result")

    def __init__(self, result: Iterable[bytes], purpose: str | None) -> None:
        self._result, self._purpose = result, purpose
        token = _current.set(purpose)
        try:
            self._iter = iter(result)
        finally:
            _current.reset(token)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        token = _current.set(self._purpose)
        try:
            return next(self._iter)
        finally:
            _current.reset(token)

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            token = _current.set(self._purpose)
            try:
                close()
            finally:
                _current.reset(token)


class PurposeWSGIMiddleware:
    """Run each request under the purpose its route declares, and refuse bad purpose claims.

    Arguments are those of :class:`~purposeguard.middleware.asgi.PurposeMiddleware`, plus
    ``flask_app`` (route with Flask's URL map). A refused claim gets a 400/403 JSON response and
    a ``purposeguard.claim_rejected`` event; the application is not called.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        routes: Mapping[str, str | Sequence[str]] | None = None,
        default: str | None = None,
        flask_app: Any = None,
        verifier: Verifier | None = None,
        claim_header: str | None = None,
        baggage: bool = True,
        untrusted: Literal["reject", "ignore"] = "reject",
        max_claim_length: int = MAX_CLAIM_LENGTH,
    ) -> None:
        self.app = app
        self.flask_app = flask_app
        self._declared, self._default, self._all = route_declarations(
            routes, default, "PurposeWSGIMiddleware"
        )
        self._reader = ClaimReader(
            verifier=verifier,
            header=claim_header,
            baggage=baggage,
            untrusted=untrusted,
            max_length=max_claim_length,
        )
        # path template → {method or None: declaration}, in declaration order
        self._table: dict[str, dict[str | None, RoutePurposes]] = {}
        for key, decl in self._declared.items():
            method, path = split_key(key)
            self._table.setdefault(path, {})[method] = decl
        self._patterns = [(_template_regex(p), p, t) for p, t in self._table.items()]
        self._ready = flask_app is None
        self._checked: Any = _UNCHECKED
        if state.compiled is not None:
            self._check()

    def _check(self) -> None:
        validate_declarations(self._all, "PurposeWSGIMiddleware")
        self._checked = state.compiled

    def _prepare_flask(self) -> None:
        """Check the keys against Flask's rules and pick up views marked with purposes()."""
        flask_app = self.flask_app
        rules = {rule.rule for rule in flask_app.url_map.iter_rules()}
        missing = sorted(set(self._table) - rules)
        if missing:
            raise ConfigurationError(
                f"PurposeWSGIMiddleware: {', '.join(map(repr, missing))} matches no Flask rule; "
                f"spell rules as declared: {', '.join(sorted(rules))}"
            )
        for rule in flask_app.url_map.iter_rules():
            mark = declared_on(flask_app.view_functions.get(rule.endpoint))
            if mark is not None:
                self._table.setdefault(rule.rule, {}).setdefault(None, mark)
                self._all[rule.rule] = mark
        self._ready = True
        self._check()

    def _route(self, environ: dict[str, Any]) -> tuple[str, dict[str | None, RoutePurposes]] | None:
        if self.flask_app is not None:
            try:
                adapter = self.flask_app.url_map.bind_to_environ(environ)
                rule, _ = adapter.match(return_rule=True)
            except Exception:  # NotFound, MethodNotAllowed, RequestRedirect: Flask answers
                return None
            table = self._table.get(rule.rule)
            return (rule.rule, table) if table else None
        path = environ.get("PATH_INFO") or "/"
        exact = self._table.get(path)
        if exact is not None:
            return path, exact
        for regex, template, table in self._patterns:
            if regex.match(path):
                return template, table
        return None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._ready:
            self._prepare_flask()
        if state.compiled is not self._checked:
            self._check()
        purpose = self._default
        found = self._route(environ)
        if found is not None:
            label, table = found
            decl = table.get(environ.get("REQUEST_METHOD")) or table.get(None)
            if decl is not None:
                reader = self._reader
                outcome = reader.decide(
                    decl, _environ_pairs(environ, reader.names), lambda: _caller(environ, label)
                )
                if isinstance(outcome, Rejection):
                    outcome.record(label, "wsgi")
                    body = outcome.body_bytes()
                    start_response(
                        f"{outcome.status} {HTTPStatus(outcome.status).phrase}",
                        [("Content-Type", "application/json"),
                         ("Content-Length", str(len(body)))],
                    )  # fmt: skip
                    return [body]
                purpose = outcome
        token = _current.set(purpose)
        try:
            result = self.app(environ, start_response)
        finally:
            _current.reset(token)
        return _PurposeIterable(result, purpose)


def init_flask(flask_app: Any, **options: Any) -> PurposeWSGIMiddleware:
    """Wrap ``flask_app.wsgi_app`` in :class:`PurposeWSGIMiddleware` routed by Flask's URL map
    and return the middleware. Options are those of the middleware."""
    if not hasattr(flask_app, "url_map") or not hasattr(flask_app, "wsgi_app"):
        raise ConfigurationError("init_flask takes a Flask app")
    middleware = PurposeWSGIMiddleware(flask_app.wsgi_app, flask_app=flask_app, **options)
    flask_app.wsgi_app = middleware
    return middleware
