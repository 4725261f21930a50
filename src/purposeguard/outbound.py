"""Carry the active purpose to internal services, and to nobody else.

W3C baggage travels with every request and reaches whoever receives it, third parties included,
so the purpose is put into the outbound ``baggage`` header only for destinations configured as
internal and stripped from every other request (a purpose entry that arrived with the inbound
request, or that an OpenTelemetry propagator copied, is stripped too)::

    out = Outbound(internal={"billing:8080": "billing-svc", "*.hr.svc": "hr-svc"}, key=KEY)
    client = httpx.Client(event_hooks=out.httpx_hooks())        # httpx
    session = out.requests_session()                              # requests
    out.inject(headers, url)                                      # OpenTelemetry propagate.inject

With ``key=`` each request gets a fresh claim signed for the destination's service (see
``purposeguard.middleware.HMACClaimVerifier``): the receiving service can trust it without
trusting the network, and nobody can replay it to another service or a second time.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from ._context import current_purpose
from ._ids import is_purpose_id
from .exceptions import ConfigurationError
from .middleware._claims import BAGGAGE_KEY
from .middleware._signed import check_audience, sign_claim

__all__ = ["Outbound", "StripPurposePropagator", "strip_purpose"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _find(headers: MutableMapping[str, str], name: str) -> list[str]:
    """Every key of ``headers`` equal to ``name`` ignoring case (plain dicts keep case)."""
    if name in headers and not isinstance(headers, dict):
        return [name]  # a case-insensitive mapping (httpx.Headers, requests' CaseInsensitiveDict)
    return [k for k in list(headers) if k.lower() == name]


def _without_purpose(value: str) -> str:
    members = [m for m in value.split(",") if m.partition("=")[0].strip(" \t") != BAGGAGE_KEY]
    return ",".join(m for m in members if m.strip(" \t"))


def strip_purpose(headers: MutableMapping[str, str], claim_header: str | None = None) -> None:
    """Remove the purpose entry from the ``baggage`` header (and ``claim_header``) in place."""
    for key in _find(headers, "baggage"):
        rest = _without_purpose(headers[key])
        if rest:
            headers[key] = rest
        else:
            del headers[key]
    if claim_header:
        for key in _find(headers, claim_header.lower()):
            del headers[key]


class Outbound:
    """Which destinations are internal, and how the purpose is sent to them.

    - ``internal``: host patterns, matched case-insensitively: ``"billing"``,
      ``"*.svc.cluster.local"`` (fnmatch-style), optionally with a port (``"billing:8080"``); or
      a mapping from such a pattern to the service name (the ``audience``) its claims are
      signed for: ``{"billing:8080": "billing-svc"}``. The first matching pattern wins.
    - ``key``: sign each claim with this HMAC key for the destination's service (a fresh nonce
      per request); ``internal`` must then be a mapping. Or ``signer``: any
      ``(purpose, audience) -> claim`` function (``audience`` is the mapped service name, or
      None). Neither: the plain purpose id is sent (for :class:`TrustedPeers` receivers).
    - ``claim_header``: also send the purpose in this header to internal destinations (and strip
      it elsewhere); by default only baggage carries it.
    """

    __slots__ = ("_patterns", "claim_header", "signer")

    def __init__(
        self,
        internal: Iterable[str] | Mapping[str, str],
        *,
        key: bytes | str | None = None,
        signer: Callable[[str, str | None], str] | None = None,
        claim_header: str | None = None,
    ) -> None:
        if key is not None and signer is not None:
            raise ConfigurationError("give key= or signer=, not both")
        audiences = isinstance(internal, Mapping)
        if isinstance(internal, str):
            raise ConfigurationError("internal= takes a list of host patterns, not one string")
        if key is not None:
            if not audiences:
                raise ConfigurationError(
                    "Outbound(key=...) signs each claim for the service that receives it: give "
                    "internal= as a mapping from host pattern to service name, for example "
                    "{'billing:8080': 'billing-svc'}"
                )
            sign_claim("audit", key, audience="check")  # fail now on a short key
            signing_key = key

            def signer(purpose: str, audience: str | None) -> str:
                assert audience is not None  # every pattern has one (checked below)
                return sign_claim(purpose, signing_key, audience=audience)

        self.signer = signer
        self.claim_header = claim_header.lower() if claim_header else None
        pairs: Iterable[tuple[Any, Any]] = (
            internal.items() if isinstance(internal, Mapping) else ((i, None) for i in internal)
        )
        patterns = []
        for item, service in pairs:
            if not isinstance(item, str) or not item.strip():
                raise ConfigurationError(f"internal destinations are host patterns, not {item!r}")
            audience = None
            if audiences:
                audience = check_audience(service, f"Outbound: the service name of {item!r}")
            host, _, port = item.strip().lower().rpartition(":") if ":" in item else (item, "", "")
            if port and not port.isdigit():
                raise ConfigurationError(f"{item!r}: the port must be a number")
            patterns.append((host.strip().lower(), int(port) if port else None, audience))
        self._patterns = tuple(patterns)

    def _match(self, url: Any) -> tuple[str | None] | None:
        """``(audience,)`` of the first internal pattern ``url`` matches, or None."""
        try:
            parts = urlsplit(str(url))
            host = (parts.hostname or "").lower()
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:  # a malformed URL (bad port, ...) is never internal
            return None
        if not host:
            return None
        for pattern, want, audience in self._patterns:
            if fnmatch.fnmatchcase(host, pattern) and (want is None or want == port):
                return (audience,)
        return None

    def is_internal(self, url: Any) -> bool:
        """True iff ``url`` (a string, ``httpx.URL`` or anything whose ``str`` is a URL) is an
        internal destination."""
        return self._match(url) is not None

    def claim(self, url: Any) -> str | None:
        """The claim to send to ``url`` for the active purpose (signed for its service if
        configured), or None when ``url`` is not internal or no purpose is active."""
        found = self._match(url)
        purpose = current_purpose()
        if found is None or purpose is None or not is_purpose_id(purpose):
            return None
        return self.signer(purpose, found[0]) if self.signer is not None else purpose

    def apply(self, headers: MutableMapping[str, str], url: Any) -> None:
        """Set or strip the purpose in ``headers`` for a request to ``url``, in place."""
        strip_purpose(headers, self.claim_header)
        claim = self.claim(url)
        if claim is None:
            return
        member = f"{BAGGAGE_KEY}={quote(claim, safe=':-_.~')}"
        keys = _find(headers, "baggage")
        if keys:
            headers[keys[0]] = f"{headers[keys[0]]},{member}"
        else:
            headers["baggage"] = member
        if self.claim_header:
            headers[self.claim_header] = claim

    # --- httpx ----------------------------------------------------------------------------------

    def httpx_hooks(self) -> dict[str, list[Callable[[Any], None]]]:
        """``event_hooks=`` for ``httpx.Client``: runs for every request, redirects included."""

        def on_request(request: Any) -> None:
            self.apply(request.headers, request.url)

        return {"request": [on_request]}

    def httpx_async_hooks(self) -> dict[str, list[Callable[[Any], Awaitable[None]]]]:
        """``event_hooks=`` for ``httpx.AsyncClient`` (its hooks must be coroutines)."""

        async def on_request(request: Any) -> None:
            self.apply(request.headers, request.url)

        return {"request": [on_request]}

    # --- requests -------------------------------------------------------------------------------

    def requests_adapter(self, **kwargs: Any) -> Any:
        """A ``requests`` transport adapter that applies the rule to every request it sends
        (redirects included: each goes through the adapter). ``kwargs`` go to ``HTTPAdapter``."""
        try:
            from requests.adapters import HTTPAdapter
        except ImportError as exc:  # pragma: no cover - exercised only without requests
            raise ImportError("requests_adapter needs requests: pip install requests") from exc
        outbound = self

        class PurposeAdapter(HTTPAdapter):
            def send(self, request: Any, *args: Any, **kw: Any) -> Any:
                outbound.apply(request.headers, request.url)
                return super().send(request, *args, **kw)

        return PurposeAdapter(**kwargs)

    def requests_session(self, session: Any = None) -> Any:
        """``session`` (or a new ``requests.Session``) with the adapter mounted for http(s)."""
        if session is None:
            import requests

            session = requests.Session()
        adapter = self.requests_adapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # --- OpenTelemetry --------------------------------------------------------------------------

    def inject(self, carrier: MutableMapping[str, str], url: Any, context: Any = None) -> None:
        """``opentelemetry.propagate.inject(carrier, context)`` followed by :meth:`apply`: the
        app's propagators run, then the purpose is set or stripped for ``url``."""
        from opentelemetry import propagate

        propagate.inject(carrier, context=context)
        self.apply(carrier, url)


class _PurposeFreeGetter(Getter[CarrierT]):
    """Reads a carrier as if its ``baggage`` held no purpose entry."""

    def __init__(self, inner: Getter[CarrierT]) -> None:
        self._inner = inner

    def get(self, carrier: CarrierT, key: str) -> list[str] | None:
        values = self._inner.get(carrier, key)
        if values is None or key.lower() != "baggage":
            return values
        kept = [v for v in (_without_purpose(value) for value in values) if v]
        return kept or None

    def keys(self, carrier: CarrierT) -> list[str]:
        return self._inner.keys(carrier)


class StripPurposePropagator(TextMapPropagator):
    """An OpenTelemetry ``TextMapPropagator`` that keeps the purpose out of OTel baggage.

    Best, wrap the baggage propagator: ``StripPurposePropagator(W3CBaggagePropagator())`` in place
    of it. The inbound ``purposeguard.purpose`` entry then never reaches OTel's parser, which
    would otherwise log a malformed entry verbatim (an untrusted claim in the server's log) and
    put a well-formed one in the context, to be forwarded to every destination. Alone (no
    ``inner``), put it last in a ``CompositePropagator``: on extract it drops the entry from the
    context, on inject it removes the entry from the carrier. Either way the purpose travels only
    where :class:`Outbound` puts it.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: TextMapPropagator | None = None) -> None:
        self._inner = inner

    @property
    def fields(self) -> set[str]:
        return self._inner.fields if self._inner is not None else {"baggage"}

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        ctx = context if context is not None else get_current()
        if self._inner is not None:
            ctx = self._inner.extract(carrier, ctx, getter=_PurposeFreeGetter(getter))
        if baggage.get_baggage(BAGGAGE_KEY, ctx) is None:
            return ctx
        return baggage.remove_baggage(BAGGAGE_KEY, ctx)

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        if self._inner is not None:
            ctx = context if context is not None else get_current()
            if baggage.get_baggage(BAGGAGE_KEY, ctx) is not None:
                ctx = baggage.remove_baggage(BAGGAGE_KEY, ctx)
            self._inner.inject(carrier, ctx, setter=setter)
        if isinstance(carrier, MutableMapping):
            strip_purpose(carrier)
