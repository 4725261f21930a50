"""Purpose at the edges of a service: per-route purposes and inbound purpose claims.

The framework integrations live in their own modules, so that importing this package imports no
framework: :mod:`purposeguard.middleware.asgi` (Starlette, FastAPI),
:mod:`purposeguard.middleware.wsgi` (Flask, any WSGI app) and
:mod:`purposeguard.middleware.django`. What they share is here. See docs/web.md.
"""

from __future__ import annotations

from ._claims import (
    BAGGAGE_KEY,
    MAX_CLAIM_LENGTH,
    ClaimReader,
    Rejection,
    RoutePurposes,
    purposes,
)
from ._peers import FORWARDING_HEADERS, TrustedPeers
from ._replay import ReplayCache
from ._signed import CLAIM_VERSION, HMACClaimVerifier, sign_claim
from ._verify import REASONS, Caller, ClaimRefused, Verifier

__all__ = [
    "BAGGAGE_KEY",
    "CLAIM_VERSION",
    "FORWARDING_HEADERS",
    "MAX_CLAIM_LENGTH",
    "REASONS",
    "Caller",
    "ClaimReader",
    "ClaimRefused",
    "HMACClaimVerifier",
    "Rejection",
    "ReplayCache",
    "RoutePurposes",
    "TrustedPeers",
    "Verifier",
    "purposes",
    "sign_claim",
]
