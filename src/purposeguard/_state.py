"""The one process state: everything a decision or an event reads, and the guard registry.

This module sits low: it imports only the compiled policy and the id grammar. ``configure()``
(:mod:`purposeguard._config`) is the façade above it that builds policies, audit logs and
registries and installs them here. The core knows the subject registry and the audit sink only
through the protocols below, never their concrete classes.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Container, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ._compile import CompiledPolicy
from ._ids import ancestors
from ._policy import Mode
from .exceptions import PolicyError

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_STORM_LIMIT",
    "DEFAULT_STORM_WINDOW",
    "Bindable",
    "Sink",
    "State",
    "SubjectRestrictions",
    "guards",
    "install_policy",
    "isolated_guards",
    "lock",
    "mode_for",
    "policy_fields",
    "register",
    "state",
    "unregister",
]

DEFAULT_STORM_LIMIT = 100
DEFAULT_STORM_WINDOW = 1.0
DEFAULT_BUFFER_SIZE = 10_000


class Sink(Protocol):
    """Where buffered records go besides structlog (the audit log is one). Records reach it as
    plain dicts: the boundary where event records become data."""

    def emit(self, record: dict[str, Any]) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...


class SubjectRestrictions(Protocol):
    """What a field decision needs to know about data subjects (the subject registry).

    ``restricted`` holds every subject with a suspension of use or a withdrawn consent: the hot
    path tests ``subject in restricted`` and nothing else. ``consenting`` holds every subject with
    an active consent (read on the deny path only). The two questions are asked only for subjects
    in those sets.
    """

    @property
    def restricted(self) -> Container[str]: ...
    @property
    def consenting(self) -> Container[str]: ...

    def use_suspension(self, subject: str, purpose: str | None) -> str | None:
        """The suspension of use that covers ``purpose`` (``"*"`` or a purpose id), or None."""
        ...

    def purpose_consent(self, subject: str, purpose: str) -> str | None:
        """The consented purpose that ``purpose`` is, or is below, or None."""
        ...

    def close(self) -> None: ...


class Bindable(Protocol):
    """A guard whose compiled allow set follows the configured policy: ``prepare`` validates it
    against a policy (raising :class:`PolicyError`) and ``install`` puts the result in force."""

    def prepare(self, compiled: CompiledPolicy | None) -> object: ...
    def install(self, prepared: object) -> None: ...


class State:
    """Everything a decision or an event reads. One instance, :data:`state`; written only under
    :data:`lock` by :mod:`purposeguard._config`."""

    __slots__ = (
        "audit",
        "buffer_size",
        "compiled",
        "mode_override",
        "registry",
        "registry_owned",
        "service",
        "storm_limit",
        "storm_window",
        "subject_key",
    )

    def __init__(self) -> None:
        self.compiled: CompiledPolicy | None = None
        self.mode_override: Mode | None = None
        self.subject_key: bytes | None = None
        self.audit: Sink | None = None
        self.registry: SubjectRestrictions | None = None
        #: whether ``configure(registry=PATH)`` opened the registry (so it closes it too)
        self.registry_owned = False
        self.service: str | None = None
        self.storm_limit: int = DEFAULT_STORM_LIMIT
        self.storm_window: float = DEFAULT_STORM_WINDOW
        self.buffer_size: int = DEFAULT_BUFFER_SIZE


state = State()
lock = threading.RLock()
#: every live guard, kept bound to the policy in force. Weak: a guard lives as long as its class
#: or function (classes keep theirs alive through ``__purposeguard_binder__``/descriptors).
_guards: weakref.WeakSet[Any] = weakref.WeakSet()


def policy_fields() -> dict[str, Any]:
    """The policy and service keys every operational event carries."""
    compiled = state.compiled
    return {
        "policy_id": compiled.id if compiled else None,
        "policy_version": compiled.version if compiled else None,
        "service": state.service,
    }


def register(guard: Bindable) -> None:
    """Bind a new guard to the current policy and keep it bound across reloads.

    Raises PolicyError at definition time if its tags name purposes the policy lacks.
    """
    with lock:
        guard.install(guard.prepare(state.compiled))
        _guards.add(guard)


def unregister(guard: Bindable) -> None:
    """Stop keeping ``guard`` bound; it then denies everything (``no_policy``)."""
    with lock:
        _guards.discard(guard)
        guard.install(guard.prepare(None))


def guards() -> list[Any]:
    """The guards kept bound now (for tests that check nothing is left behind)."""
    return list(_guards)


def install_policy(compiled: CompiledPolicy | None) -> None:
    """Validate every guard against ``compiled``, then install all of them and the policy:
    all or nothing. Raises PolicyError (and changes nothing) if a live guard does not fit."""
    with lock:
        try:
            prepared = [(guard, guard.prepare(compiled)) for guard in list(_guards)]
        except PolicyError:
            prepared = None
        if prepared is None:
            # A guard that is only garbage waiting in a reference cycle (a class defined in a
            # function that returned) must not veto the policy: collect, then ask the live ones.
            # (Outside the except block: the error's traceback would keep the vetoing guard.)
            gc.collect()
            prepared = [(guard, guard.prepare(compiled)) for guard in list(_guards)]
        for guard, value in prepared:
            guard.install(value)
        state.compiled = compiled


@contextmanager
def isolated_guards() -> Iterator[None]:
    """Within the block only guards defined inside it follow the policy (for tests that
    configure unrelated policies). Guards defined before are unbound (they deny everything)
    meanwhile; when the block ends, the guards defined inside it are unbound and the earlier
    ones are bound again to the policy then in force."""
    with lock:
        saved = list(_guards)
        for guard in saved:
            unregister(guard)
    try:
        yield
    finally:
        with lock:
            for guard in list(_guards):
                unregister(guard)
            for guard in saved:
                try:
                    register(guard)
                except PolicyError:
                    _guards.add(guard)  # stays unbound (deny) until a fitting policy comes


def mode_for(purpose: str | None, tag_mode: Mode | None) -> Mode:
    """The mode of one violation: field/accessor override, then the purpose's (nearest declared
    ancestor's) override, then ``configure(mode=)``, then the policy's default; enforce without a
    policy."""
    if tag_mode is not None:
        return tag_mode
    compiled = state.compiled
    if compiled is not None and purpose is not None and compiled.modes:
        for p in (purpose, *ancestors(purpose)):
            mode = compiled.modes.get(p)
            if mode is not None:
                return mode
    if state.mode_override is not None:
        return state.mode_override
    return compiled.default_mode if compiled is not None else "enforce"
