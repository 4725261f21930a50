"""A value being computed for a purpose-aware cache, and whether it may be kept.

``pg.cache`` (:mod:`purposeguard._cache`) keys what it keeps by the active purpose, the policy
in force and the subject registry's set of restricted subjects: every fast-path decision is a
function of those. Some decisions depend on more, and the value computed after one of them must
not be served again: a violation (recorded in monitor mode, or raised in enforce mode and caught
by the function), a record's own consent, a subject's consent or restriction, the clock (a
retention period), a provision (recorded every time). Each of those calls :func:`uncacheable`.
It reads one ContextVar, so it costs next to nothing where no cache is computing.
"""

from __future__ import annotations

import contextvars

__all__ = ["Derivation", "begin", "end", "uncacheable"]


class Derivation:
    """One computation of a cached value. ``kept`` turns False when a decision made during it
    depends on more than the cache's key; a computation inside another marks the outer one too."""

    __slots__ = ("kept", "outer")

    def __init__(self, outer: Derivation | None) -> None:
        self.kept = True
        self.outer = outer


_current: contextvars.ContextVar[Derivation | None] = contextvars.ContextVar(
    "purposeguard.derivation", default=None
)


def uncacheable() -> None:
    """The decision just made depends on more than a cache key holds: the values being computed
    for caches (if any) must not be kept."""
    derivation = _current.get()
    while derivation is not None and derivation.kept:
        derivation.kept = False
        derivation = derivation.outer


def begin() -> tuple[Derivation, contextvars.Token[Derivation | None]]:
    """Start computing a value for a cache (within whatever computation is running)."""
    derivation = Derivation(_current.get())
    return derivation, _current.set(derivation)


def end(token: contextvars.Token[Derivation | None]) -> None:
    """Stop computing the value :func:`begin` started."""
    _current.reset(token)
