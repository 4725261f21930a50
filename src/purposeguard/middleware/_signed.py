"""Signed purpose claims: bound to one service (and optionally one route), short-lived, used once.

A v2 claim is ``v2:<purpose>:<unix time>:<audience>:<route tag>:<nonce>:<signature>``:

- ``audience``: the name of the service the claim is for; a service refuses claims for another.
- ``route tag``: ``-``, or 16 characters naming one route template (a hash of it): the claim is
  then accepted on that route only.
- ``nonce``: random, so that a verifier can remember it and refuse the claim a second time.
- ``signature``: HMAC-SHA256 of everything before it, base64url without padding.

Every character is a valid W3C baggage value character, so the claim travels unescaped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

from .._ids import describe_bad_id, is_purpose_id
from ..exceptions import ConfigurationError
from ._replay import ReplayCache
from ._verify import Caller, ClaimRefused

__all__ = ["CLAIM_VERSION", "HMACClaimVerifier", "ReplayCache", "sign_claim"]

#: The version of the claims :func:`sign_claim` makes.
CLAIM_VERSION: Final = "v2"
_AUDIENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
_TAG = re.compile(r"[A-Za-z0-9_-]{16}\Z")
_SIG = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_STAMP = re.compile(r"[0-9]{1,12}\Z")
_VERSION = re.compile(r"v[0-9]{1,3}\Z")
_UNBOUND = "-"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_bytes(key: bytes | str) -> bytes:
    data = key.encode() if isinstance(key, str) else bytes(key)
    if len(data) < 16:
        raise ConfigurationError("a claim-signing key needs at least 16 bytes")
    return data


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def route_tag(route: str) -> str:
    """The 16-character tag that binds a claim to one route template."""
    return _b64(hashlib.sha256(route.encode("utf-8")).digest()[:12])


def check_audience(audience: str, where: str) -> str:
    """``audience`` if it is a service name a claim can carry; raises ConfigurationError."""
    if not isinstance(audience, str) or not _AUDIENCE.match(audience):
        raise ConfigurationError(
            f"{where}: a service name is 1-64 characters of letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (for example 'orders-svc')"
        )
    return audience


def sign_claim(
    purpose: str,
    key: bytes | str,
    *,
    audience: str,
    route: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A signed claim for ``purpose`` that the service named ``audience`` accepts.

    - ``audience``: the receiving service's name, as its :class:`HMACClaimVerifier` is given.
    - ``route``: bind the claim to this route template of that service (spelled as the receiving
      middleware records it, for example ``"/orders/{order_id}"``); by default any route.
    - ``nonce``: 16-64 base64url characters, unique per claim; by default a random one. A
      verifier accepts each nonce once.
    - ``now``: the signing time (unix seconds); by default the current time.

    Raises ConfigurationError on a malformed purpose id, service name, route or nonce, or a key
    shorter than 16 bytes.
    """
    if not is_purpose_id(purpose):
        raise ConfigurationError(describe_bad_id(purpose))
    check_audience(audience, "sign_claim(audience=...)")
    if route is not None and (not isinstance(route, str) or not route or not route.isprintable()):
        raise ConfigurationError("sign_claim(route=...) takes a route template, such as '/a/{id}'")
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
    elif not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ConfigurationError("sign_claim(nonce=...) takes 16-64 base64url characters")
    stamp = int(time.time() if now is None else now)
    tag = _UNBOUND if route is None else route_tag(route)
    body = f"{CLAIM_VERSION}:{purpose}:{stamp}:{audience}:{tag}:{nonce}"
    return f"{body}:{_mac(_key_bytes(key), body)}"


class HMACClaimVerifier:
    """Accept a claim made by :func:`sign_claim` for this service, once, while it is fresh.

    - ``keys``: one or more shared keys (rotation: any one verifies).
    - ``audience``: this service's name; a claim signed for another service is refused
      (``wrong_audience``). A claim bound to a route is accepted on that route only
      (``wrong_route``); ``require_route=True`` refuses claims bound to no route.
    - ``max_age``: seconds a claim stays valid after it was signed (``expired``); ``skew``:
      seconds it may be dated ahead of this server's clock (``not_yet_valid``).
    - ``replay_cache``: where the nonces of accepted claims are kept (default: a
      :class:`ReplayCache` of this verifier's own); a nonce seen again is ``replayed``.
    - ``accept_v1``: also accept the old ``v1:<purpose>:<time>:<sig>`` claims, which name no
      service and carry no nonce, for as long as senders are being upgraded. Off by default:
      such a claim is refused (``unsupported_version``).
    - ``clock``: the time source (unix seconds), for tests.

    Raises ConfigurationError on a missing key or audience, a key under 16 bytes, or a
    ``max_age`` that is not positive.
    """

    __slots__ = (
        "_clock",
        "_keys",
        "accept_v1",
        "audience",
        "max_age",
        "replay_cache",
        "require_route",
        "skew",
    )

    def __init__(
        self,
        *keys: bytes | str,
        audience: str,
        max_age: float = 60.0,
        skew: float = 5.0,
        require_route: bool = False,
        replay_cache: ReplayCache | None = None,
        accept_v1: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ConfigurationError("HMACClaimVerifier needs at least one key")
        if not max_age > 0 or not skew >= 0:
            raise ConfigurationError("HMACClaimVerifier: max_age must be > 0 and skew >= 0")
        self._keys = tuple(_key_bytes(k) for k in keys)
        self.audience = check_audience(audience, "HMACClaimVerifier(audience=...)")
        self.max_age, self.skew, self._clock = max_age, skew, clock
        self.require_route = require_route
        self.replay_cache = ReplayCache() if replay_cache is None else replay_cache
        self.accept_v1 = accept_v1

    def __repr__(self) -> str:
        return (
            f"HMACClaimVerifier(<{len(self._keys)} key(s)>, audience={self.audience!r}, "
            f"max_age={self.max_age})"
        )

    def _signed(self, claim: str) -> bool:
        body, _, sig = claim.rpartition(":")
        want = sig.encode("ascii", "replace")
        return any(hmac.compare_digest(_mac(k, body).encode(), want) for k in self._keys)

    def _fresh(self, stamp: int) -> float:
        now = self._clock()
        age = now - stamp
        if age > self.max_age:
            raise ClaimRefused("expired")
        if age < -self.skew:
            raise ClaimRefused("not_yet_valid")
        return now

    def __call__(self, claim: str, caller: Caller) -> str | None:
        parts = claim.split(":")
        version = parts[0]
        if len(parts) == 1:
            return None  # a plain purpose id is no signed claim: the caller is not trusted
        if version != CLAIM_VERSION:
            if not _VERSION.match(version):
                return None
            if version == "v1" and self.accept_v1:
                return self._v1(claim, parts)
            raise ClaimRefused("unsupported_version")
        if len(parts) != 7:
            raise ClaimRefused("malformed")
        _, purpose, stamp, audience, tag, nonce, sig = parts
        if not (
            _STAMP.match(stamp)
            and _AUDIENCE.match(audience)
            and (tag == _UNBOUND or _TAG.match(tag))
            and _NONCE.match(nonce)
            and _SIG.match(sig)
        ):
            raise ClaimRefused("malformed")
        if not self._signed(claim):
            return None  # not from a key holder: say no more than "untrusted"
        if audience != self.audience:
            raise ClaimRefused("wrong_audience")
        if tag == _UNBOUND:
            if self.require_route:
                raise ClaimRefused("wrong_route")
        elif caller.route is None or not hmac.compare_digest(tag, route_tag(caller.route)):
            raise ClaimRefused("wrong_route")
        now = self._fresh(int(stamp))
        seen = self.replay_cache.add(nonce, int(stamp) + self.max_age, now)
        if seen != "new":
            raise ClaimRefused("replayed" if seen == "replayed" else "replay_cache_full")
        return purpose

    def _v1(self, claim: str, parts: list[str]) -> str | None:
        if len(parts) != 4 or not _STAMP.match(parts[2]) or not self._signed(claim):
            return None
        self._fresh(int(parts[2]))
        return parts[1]
