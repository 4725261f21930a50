"""Route declarations and inbound purpose claims, shared by the ASGI, WSGI and Django middleware.

A purpose is decided by the server: each route declares the purposes it may run under, and the
first one is its default. An inbound claim (the W3C ``baggage`` entry ``purposeguard.purpose`` or a
configured header) is untrusted input: it counts only when a verifier vouches for the caller, and
it can only pick one of the route's declared purposes. Everything here is framework-free.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote

from .._emitter import emitter
from .._ids import describe_bad_id, is_purpose_id
from .._state import state
from ..exceptions import ConfigurationError, PolicyError
from ._verify import IGNORABLE, REASONS, Caller, ClaimRefused, Verifier

__all__ = [
    "BAGGAGE_KEY",
    "MAX_BAGGAGE_LENGTH",
    "MAX_CLAIM_LENGTH",
    "ClaimReader",
    "Rejection",
    "RoutePurposes",
    "purposes",
]

#: The W3C baggage entry that carries a purpose between services.
BAGGAGE_KEY: Final = "purposeguard.purpose"
#: Longest accepted claim value, in characters (a v2 signed claim is at most 335).
MAX_CLAIM_LENGTH: Final = 512
#: W3C Baggage caps the header at 8192 bytes; a longer one carrying our key is rejected.
MAX_BAGGAGE_LENGTH: Final = 8192
#: Attribute that ``purposes()`` sets on an endpoint or view.
ROUTE_ATTR: Final = "__purposeguard_route__"

F = TypeVar("F", bound=Callable[..., Any])

# --- route declarations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutePurposes:
    """The purposes one route may run under; ``default`` (the first declared) applies when the
    request carries no claim."""

    default: str
    allowed: frozenset[str]
    declared: tuple[str, ...]

    @classmethod
    def of(cls, spec: str | Sequence[str] | RoutePurposes, where: str = "route") -> RoutePurposes:
        """Build from one purpose id or a sequence of them; raises ConfigurationError if one is
        malformed or none is given."""
        if isinstance(spec, RoutePurposes):
            return spec
        ids = (spec,) if isinstance(spec, str) else tuple(spec)
        if not ids:
            raise ConfigurationError(f"{where}: declare at least one purpose")
        for pid in ids:
            if not is_purpose_id(pid):
                raise ConfigurationError(f"{where}: {describe_bad_id(pid)}")
        unique = tuple(dict.fromkeys(ids))
        return cls(unique[0], frozenset(unique), unique)


def purposes(*ids: str) -> Callable[[F], F]:
    """Declare the purposes an endpoint or view may run under (the first is the default).

    Put it under the framework's route decorator (``@app.get(...)``, ``@app.route(...)``) so the
    framework registers the marked function. The middleware finds the mark and sets the purpose
    for the whole request, response serialization and streaming included::

        @app.get("/applicants/{id}")
        @purposes("recruitment.selection", "audit")
        async def applicant(id: str): ...
    """
    declaration = RoutePurposes.of(ids, "purposes()")

    def mark(fn: F) -> F:
        setattr(fn, ROUTE_ATTR, declaration)
        return fn

    return mark


def declared_on(endpoint: object) -> RoutePurposes | None:
    """The ``purposes()`` mark of an endpoint (unwrapping ``functools.wraps`` chains)."""
    seen = 0
    while endpoint is not None and seen < 16:
        mark = getattr(endpoint, ROUTE_ATTR, None)
        if isinstance(mark, RoutePurposes):
            return mark
        endpoint = getattr(endpoint, "__wrapped__", None)
        seen += 1
    return None


def split_key(key: str) -> tuple[str | None, str]:
    """``"GET /a"`` → ``("GET", "/a")``; ``"/a"`` → ``(None, "/a")``."""
    method, sep, path = key.strip().partition(" ")
    if sep and method.isalpha() and method.isupper():
        return method, path.strip()
    return None, key.strip()


def validate_declarations(declarations: Mapping[str, RoutePurposes], where: str) -> None:
    """Raise PolicyError if a route names a purpose the configured policy does not declare."""
    compiled = state.compiled
    if compiled is None:
        return
    for route, decl in declarations.items():
        missing = [p for p in decl.declared if p not in compiled.purposes]
        if missing:
            raise PolicyError(
                f"{where}: route {route!r} declares {', '.join(map(repr, missing))}, which policy "
                f"{compiled.id}@{compiled.version} does not declare",
                file=compiled.policy.source or "<python>",
                path=f"purposes.{missing[0]}",
                fix="declare the purpose in the policy, or fix the route's declaration",
            )


# --- reading a claim -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a claim was refused; carries no part of the claim but its length and a hash prefix."""

    reason: str
    source: str
    length: int
    digest: str

    @property
    def status(self) -> int:
        return REASONS[self.reason][0]

    def body(self) -> dict[str, str]:
        """The JSON response body: a reason code and fixed text, never the claim."""
        return {"error": "purpose_claim_rejected", "reason": self.reason,
                "detail": REASONS[self.reason][1]}  # fmt: skip

    def body_bytes(self) -> bytes:
        return _BODIES[self.reason]

    def record(self, route: str, framework: str) -> None:
        """Record a ``purposeguard.claim_rejected`` event (and a span event when a span is
        recording). ``route`` must be the server's route template, never the raw path."""
        compiled = state.compiled
        fields: dict[str, str | int | None] = {
            "reason": self.reason,
            "status": self.status,
            "source": self.source,
            "claim_length": self.length,
            "claim_sha256": self.digest,
            "route": route,
            "framework": framework,
            "policy_id": compiled.id if compiled else None,
            "policy_version": compiled.version if compiled else None,
            "service": state.service,
        }
        emitter.record("purposeguard.claim_rejected", fields)
        from opentelemetry import trace  # the API only; a dependency of the core already

        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "purposeguard.claim_rejected",
                {f"purposeguard.{k}": v for k, v in fields.items() if v is not None},
            )


def _json(reason: str) -> bytes:
    import json

    return json.dumps(
        {"error": "purpose_claim_rejected", "reason": reason, "detail": REASONS[reason][1]}
    ).encode()


_BODIES = {reason: _json(reason) for reason in REASONS}


def _reject(reason: str, source: str, raw: str | bytes) -> Rejection:
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    # a hash prefix lets an operator match repeated attempts without storing the claim
    return Rejection(reason, source, len(data), hashlib.sha256(data).hexdigest()[:16])


def _baggage_entries(value: str) -> list[str]:
    """The raw values of every ``purposeguard.purpose`` member of a baggage header."""
    found = []
    for member in value.split(","):
        key, eq, rest = member.partition("=")
        if eq and key.strip(" \t") == BAGGAGE_KEY:
            found.append(rest.partition(";")[0].strip(" \t"))
    return found


def route_declarations(
    routes: Mapping[str, str | Sequence[str]] | None, default: str | None, owner: str
) -> tuple[dict[str, RoutePurposes], str | None, dict[str, RoutePurposes]]:
    """``(declared routes, default purpose, everything to check against the policy)`` from a
    middleware's ``routes=`` and ``default=``; malformed declarations raise here."""
    declared = {
        key: RoutePurposes.of(spec, f"{owner} route {key!r}")
        for key, spec in (routes or {}).items()
    }
    default_id = None if default is None else RoutePurposes.of(default, "default").default
    every = dict(declared)
    if default_id is not None:
        every["(default)"] = RoutePurposes.of(default_id)
    return declared, default_id, every


class ClaimReader:
    """Finds, bounds, verifies and checks an inbound purpose claim.

    - ``verifier``: decides whether the caller may claim a purpose (``None``: nobody may).
    - ``header``: also read a plain header (for example ``"x-purpose"``) besides baggage.
    - ``baggage``: read the W3C ``baggage`` entry ``purposeguard.purpose`` (default True).
    - ``untrusted``: ``"reject"`` (default) answers 403 when an unverified caller sends a claim;
      ``"ignore"`` runs the request under the route's default purpose instead. Only "this caller
      may not claim" is ignored (``untrusted``, ``forwarded``, ``forwarding_ambiguous``); a
      signed claim that is expired, replayed or for another service is refused either way.
    - ``max_length``: longest claim value accepted.
    """

    __slots__ = (
        "baggage",
        "byte_names",
        "header",
        "max_length",
        "names",
        "untrusted",
        "verifier",
    )

    def __init__(
        self,
        *,
        verifier: Verifier | None = None,
        header: str | None = None,
        baggage: bool = True,
        untrusted: Literal["reject", "ignore"] = "reject",
        max_length: int = MAX_CLAIM_LENGTH,
    ) -> None:
        if untrusted not in ("reject", "ignore"):
            raise ConfigurationError("untrusted must be 'reject' or 'ignore'")
        if header is not None and (not header or not header.isascii() or " " in header):
            raise ConfigurationError(f"header must be an ASCII header name, not {header!r}")
        if not baggage and header is None:
            raise ConfigurationError("with baggage=False, name a header= to read claims from")
        self.verifier = verifier
        self.header = header.lower() if header else None
        self.baggage = baggage
        self.untrusted = untrusted
        self.max_length = max_length
        names = {"baggage"} if baggage else set()
        if self.header:
            names.add(self.header)
        #: lowercase header names (str) that can carry a claim
        self.names = frozenset(names)
        #: the same as bytes, as ASGI gives header names (lowercased, per the ASGI spec)
        self.byte_names = frozenset(name.encode("latin-1") for name in names)

    def find(self, pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | Rejection | None:
        """The one claim among ``(lowercase name, value)`` header pairs (only those whose name
        is in :attr:`names` need be given): ``(source, claim)``, a Rejection, or None."""
        claims: list[tuple[str, str]] = []
        for name, value in pairs:
            if name == "baggage":
                if BAGGAGE_KEY not in value:
                    continue  # other baggage is none of our business, whatever its size
                if len(value) > MAX_BAGGAGE_LENGTH:
                    return _reject("oversized", "baggage", value)
                for raw in _baggage_entries(value):
                    claims.append(("baggage", raw))
            else:
                claims.append(("header", value.strip(" \t")))
        if not claims:
            return None
        source, raw = claims[0]
        if len(raw) > self.max_length:
            return _reject("oversized", source, raw)
        if len({c for _, c in claims}) > 1:
            return _reject("ambiguous", source, raw)
        claim = unquote(raw, errors="strict") if source == "baggage" else raw
        if not claim or not claim.isascii() or not claim.isprintable():
            return _reject("malformed", source, raw)
        return source, claim

    def decide(
        self,
        route: RoutePurposes,
        pairs: Iterable[tuple[str, str]],
        caller: Callable[[], Caller],
    ) -> str | Rejection:
        """The purpose a request to ``route`` runs under, or why its claim is refused."""
        try:
            found = self.find(pairs)
        except UnicodeDecodeError:
            return _reject("malformed", "baggage", b"")
        if found is None:
            return route.default
        if isinstance(found, Rejection):
            return found
        source, claim = found
        reason = "untrusted"
        vouched = None
        if self.verifier is not None:
            try:
                vouched = self.verifier(claim, caller())
            except ClaimRefused as refused:
                reason = refused.reason
            except Exception:  # a failing verifier vouches for nobody; it must not become a 500
                pass
        if vouched is None:
            if self.untrusted == "ignore" and reason in IGNORABLE:
                return route.default
            return _reject(reason, source, claim)
        if not isinstance(vouched, str) or not is_purpose_id(vouched):
            return _reject("malformed", source, claim)
        compiled = state.compiled
        if compiled is not None and vouched not in compiled.purposes:
            return _reject("unknown_purpose", source, claim)
        if vouched not in route.allowed:
            return _reject("not_allowed", source, claim)
        return vouched
