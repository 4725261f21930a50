"""What a claim verifier is given, what it returns, and the reasons a claim can be refused for.

Framework-free and below every verifier: the ASGI, WSGI and Django middleware build a
:class:`Caller`; :class:`~purposeguard.middleware.HMACClaimVerifier`,
:class:`~purposeguard.middleware.TrustedPeers` or the application's own callable looks at it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["IGNORABLE", "REASONS", "Caller", "ClaimRefused", "Verifier"]

#: Every reason a claim can be refused for: ``reason -> (HTTP status, fixed response text)``.
#: The text is all a caller learns; it never holds any part of the claim or of a header.
REASONS: Final[Mapping[str, tuple[int, str]]] = {
    "oversized": (400, "The purpose claim is too long."),
    "malformed": (400, "The purpose claim is not well-formed."),
    "ambiguous": (400, "The request carries more than one purpose claim."),
    "untrusted": (403, "Purpose claims are not accepted from this caller."),
    "forwarded": (
        403,
        "The request carries forwarding headers and no proxy is trusted to set them; "
        "send purpose claims directly, or through a proxy the service names.",
    ),
    "forwarding_ambiguous": (
        403,
        "The forwarding headers do not name one caller address; "
        "purpose claims are not accepted through this chain of proxies.",
    ),
    "unsupported_version": (403, "This claim format is not accepted; send a v2 signed claim."),
    "wrong_audience": (403, "The purpose claim was signed for another service."),
    "wrong_route": (403, "The purpose claim was signed for another route."),
    "expired": (403, "The purpose claim has expired; sign a fresh one for each request."),
    "not_yet_valid": (403, "The purpose claim is dated in the future; check the signer's clock."),
    "replayed": (403, "The purpose claim was already used; sign a fresh one for each request."),
    "replay_cache_full": (503, "Too many purpose claims are in flight; retry later."),
    "unknown_purpose": (403, "The claimed purpose is not declared in the policy."),
    "not_allowed": (403, "This route does not run under the claimed purpose."),
}

#: The reasons that say only "this caller may not claim a purpose": with ``untrusted="ignore"``
#: such a request runs under the route's default purpose instead of being refused.
IGNORABLE: Final = frozenset({"untrusted", "forwarded", "forwarding_ambiguous"})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as far as the server can tell; what a verifier looks at.

    - ``headers``: lowercase names, repeated headers joined with ``,``.
    - ``client``: the peer address the server reports. Behind a server or middleware that
      rewrites it from ``X-Forwarded-For`` (uvicorn does by default for 127.0.0.1), it is not the
      socket's peer; :class:`~purposeguard.middleware.TrustedPeers` knows how to tell.
    - ``raw``: the framework's own request data (ASGI scope, WSGI environ or Django
      ``request.META``), for example to read a TLS client identity a server puts there.
    - ``route``: the template of the route the request matched (``/orders/{order_id}``,
      ``/orders/<int:order_id>``, ``orders/<int:pk>/``), as the middleware records it; never the
      concrete path. A route-bound signed claim is checked against it.
    """

    headers: Mapping[str, str]
    client: tuple[str, int] | None = None
    raw: Any = field(default=None, repr=False, compare=False)
    route: str | None = None


class ClaimRefused(Exception):
    """Raised by a verifier to refuse a claim for a stated reason (a key of :data:`REASONS`).

    The request gets that reason's status and fixed text, and the refusal is recorded with it.
    An unknown reason counts as ``untrusted``; any other exception from a verifier does too.
    Carry only the reason: never put the claim or a header value in it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason if reason in REASONS else "untrusted"


#: A verifier gets the claim and the caller, and returns the purpose it vouches for, ``None``
#: when the caller is not trusted or the claim does not verify, or raises :class:`ClaimRefused`
#: to say why.
Verifier = Callable[[str, Caller], "str | None"]
