"""All process-wide state in one place: the compiled policy, the mode override, the sinks.

``configure()`` changes only what it is given (like ``structlog.configure``). A policy swap is
validated against every registered guard first, then installed; a bad policy never replaces a
good one.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog

from ._compile import CompiledPolicy, compile_policy
from ._events import ENV_SERVICE, Sink, emitter
from ._ids import ancestors
from ._load import load_policy
from ._policy import Mode, Policy
from .exceptions import ConfigurationError, PolicyError
from .sinks.audit import AUDIT_KEY_ENV, AuditLog

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["ENV_AUDIT_KEY", "ENV_SERVICE", "configure", "get_policy", "reload_policy"]

#: Environment variable: the HMAC key (text) for audit-log headers and checkpoints, when
#: ``configure(audit_key=)`` is not given.
ENV_AUDIT_KEY: Final = AUDIT_KEY_ENV

_UNSET: Any = object()
_MODES = ("enforce", "monitor")


class Bindable(Protocol):
    """A guard whose compiled allow set follows the configured policy."""

    def prepare(self, compiled: CompiledPolicy | None) -> object: ...
    def install(self, prepared: object) -> None: ...


class SubjectRegistry(Protocol):
    """Per-subject restrictions consulted when guarded data of a known subject is used."""

    def restricts(self, subject_id: object, purpose: str) -> bool:
        """True iff the subject has suspended use of their data for ``purpose``."""
        ...


class _State:
    __slots__ = ("audit", "compiled", "mode_override", "registry", "subject_key")

    def __init__(self) -> None:
        self.compiled: CompiledPolicy | None = None
        self.mode_override: Mode | None = None
        self.subject_key: bytes | None = None
        self.audit: Sink | None = None
        self.registry: Registry | None = None


state = _State()
_lock = threading.RLock()
_guards: weakref.WeakSet[Any] = weakref.WeakSet()


def register(guard: Bindable) -> None:
    """Bind a new guard to the current policy and keep it bound across reloads.

    Raises PolicyError at definition time if its tags name purposes the policy lacks.
    """
    with _lock:
        guard.install(guard.prepare(state.compiled))
        _guards.add(guard)


def unregister(guard: Bindable) -> None:
    """Stop keeping ``guard`` bound; it then denies everything (``no_policy``)."""
    with _lock:
        _guards.discard(guard)
        guard.install(guard.prepare(None))


@contextmanager
def isolated_guards() -> Iterator[None]:
    """Within the block only guards defined inside it follow the policy (for tests that
    configure unrelated policies). Guards defined before are unbound (they deny everything)
    meanwhile; when the block ends, the guards defined inside it are unbound and the earlier
    ones are bound again to the policy then in force."""
    with _lock:
        saved = list(_guards)
        for guard in saved:
            unregister(guard)
    try:
        yield
    finally:
        with _lock:
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


def _effective_modes() -> dict[str, Mode]:
    compiled = state.compiled
    modes: dict[str, Mode] = {"*": mode_for(None, None)}
    if compiled is not None:
        modes.update({f"purposes.{p}": m for p, m in compiled.modes.items()})
        modes.update({f"fields.{f}": t.mode for f, t in compiled.field_tags.items() if t.mode})
    return modes


def _swap(compiled: CompiledPolicy | None) -> None:
    """Validate every guard against ``compiled``, then install all of them; all or nothing."""
    try:
        prepared = [(guard, guard.prepare(compiled)) for guard in list(_guards)]
    except PolicyError:
        # A guard that is only garbage waiting in a reference cycle must not veto the policy:
        # collect, then ask the guards that are still alive.
        gc.collect()
        prepared = [(guard, guard.prepare(compiled)) for guard in list(_guards)]
    for guard, value in prepared:
        guard.install(value)
    state.compiled = compiled


def configure(
    *,
    policy: Policy | str | os.PathLike[str] | None = _UNSET,
    mode: Mode | None = _UNSET,
    audit_log: str | os.PathLike[str] | Sink | None = _UNSET,
    audit_key: bytes | str | None = _UNSET,
    subject_key: bytes | str | None = _UNSET,
    service: str | None = _UNSET,
    storm_limit: int = _UNSET,
    storm_window: float = _UNSET,
    buffer_size: int = _UNSET,
    registry: Registry | str | os.PathLike[str] | None = _UNSET,
) -> None:
    """Configure purposeguard process-wide. Only the arguments given change.

    - ``policy``: a :class:`Policy`, or a path to load (remembered for :func:`reload_policy`);
      ``None`` removes the policy (every guarded use is then denied with ``no_policy``).
    - ``mode``: ``"enforce"`` or ``"monitor"`` replaces the policy's default mode, across policy
      reloads, until ``mode=None`` hands it back to the policy. Per-purpose and per-field
      overrides in the policy still apply.
    - ``audit_log``: a path (JSON lines, hash-chained; see docs/audit-log.md), a sink object, or
      ``None`` to stop writing one. ``audit_key`` is its checkpoint HMAC key.
    - ``subject_key``: the HMAC key for the keyed hash of subject ids in events.
    - ``service``: the service name written into events.
    - ``storm_limit``/``storm_window``: at most this many identical violations per window are
      logged one by one; the rest are counted into one summary record.
    - ``buffer_size``: capacity of the log buffer; overflow is counted and reported.
    - ``registry``: the subject registry (:class:`~purposeguard.Registry`), or a path to its
      SQLite file; ``None`` removes it. See docs/consent-and-provision.md.

    Raises :class:`PolicyError` (and changes nothing) if the policy is invalid or does not
    declare a purpose that a guard already defined uses.
    """
    # Arguments are checked before anything changes: a bad one leaves the configuration as it was.
    if mode is not _UNSET and mode is not None and mode not in _MODES:
        raise ConfigurationError(f"mode must be 'enforce', 'monitor' or None, not {mode!r}")
    for name, value in (
        ("storm_limit", storm_limit),
        ("storm_window", storm_window),
        ("buffer_size", buffer_size),
    ):
        if value is not _UNSET:
            _positive(name, value)
    if audit_key is not _UNSET and audit_log is _UNSET:
        raise ConfigurationError("audit_key= is given without audit_log=; pass both")
    with _lock:
        before = _effective_modes()
        if audit_log is not _UNSET:  # first, so that it records the policy this call installs
            _set_audit(audit_log, audit_key)
        if policy is not _UNSET:
            _set_policy(policy)
        if mode is not _UNSET:
            state.mode_override = mode
        if subject_key is not _UNSET:
            state.subject_key = (
                subject_key.encode() if isinstance(subject_key, str) else subject_key
            )
        if service is not _UNSET:
            emitter.service = service
        if storm_limit is not _UNSET:
            emitter.storm_limit = _positive("storm_limit", storm_limit)
        if storm_window is not _UNSET:
            emitter.storm_window = _positive("storm_window", storm_window)
        if buffer_size is not _UNSET:
            emitter.capacity = _positive("buffer_size", buffer_size)
        if registry is not _UNSET:
            _set_registry(registry)
        _record_mode_changes(before)


def _record_mode_changes(before: dict[str, Mode]) -> None:
    after = _effective_modes()
    if before != after:
        changes = {
            key: [before.get(key), after.get(key)]
            for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)
        }
        emitter.record("purposeguard.mode_change", {"changes": changes, **_policy_fields()})


def _positive(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
    return value


def _policy_fields() -> dict[str, Any]:
    compiled = state.compiled
    return {
        "policy_id": compiled.id if compiled else None,
        "policy_version": compiled.version if compiled else None,
        "service": emitter.service,
    }


def _set_policy(policy: Policy | str | os.PathLike[str] | None) -> None:
    if policy is None:
        _swap(None)
        return
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    _swap(compile_policy(policy))
    emitter.record("purposeguard.policy_loaded", {"source": policy.source, **_policy_fields()})


def reload_policy() -> None:
    """Load the configured policy file again and swap it in.

    On any error the last good policy stays in force, a ``purposeguard.policy_reload_failed``
    event is recorded, and the :class:`PolicyError` is raised.
    """
    with _lock:
        compiled = state.compiled
        source = compiled.policy.source if compiled else None
        if source is None:
            raise ConfigurationError("no policy file is configured; call configure(policy=PATH)")
        before = _effective_modes()
        try:
            _swap(compile_policy(load_policy(source)))
        except PolicyError as exc:
            emitter.record(
                "purposeguard.policy_reload_failed",
                {"source": source, "error": str(exc), **_policy_fields()},
            )
            raise
        emitter.record("purposeguard.policy_reload", {"source": source, **_policy_fields()})
        _record_mode_changes(before)


def _set_audit(audit_log: Any, audit_key: Any) -> None:
    old = state.audit
    if audit_log is None:
        new = None
    elif isinstance(audit_log, str | os.PathLike):
        key = None if audit_key is _UNSET else audit_key
        new = AuditLog(Path(audit_log), key=key.encode() if isinstance(key, str) else key)
    else:
        new = audit_log
    emitter.flush()
    state.audit = new
    emitter.set_sinks(() if new is None else (new,))
    if old is not None and old is not new:
        _close_quietly(old)


def _set_registry(registry: Any) -> None:
    if isinstance(registry, str | os.PathLike):
        from .registry import Registry  # imported only when a registry is configured

        registry = Registry(registry)
        registry.opened_by_configure = True
    elif registry is not None and not hasattr(registry, "restricted"):
        raise ConfigurationError(
            f"registry= takes a purposeguard.Registry or a path, not {type(registry).__name__}"
        )
    old, state.registry = state.registry, registry
    if old is not None and old is not registry and getattr(old, "opened_by_configure", False):
        old.close()  # configure opened it from a path, so nobody else holds it


def _close_quietly(sink: Sink) -> None:
    try:
        sink.close()
    except Exception:
        structlog.get_logger("purposeguard").exception("purposeguard.sink_close_failed")


def get_policy() -> Policy | None:
    """The policy in force, or ``None``."""
    compiled = state.compiled
    return compiled.policy if compiled else None


def reset() -> None:
    """Forget all configuration (for tests): no policy, no override, no audit log."""
    with _lock:
        emitter.flush()
        _swap(None)
        state.mode_override = None
        state.subject_key = None
        registry, state.registry = state.registry, None
        if registry is not None and getattr(registry, "opened_by_configure", False):
            registry.close()  # a registry the caller built is the caller's to close
        if state.audit is not None:
            _close_quietly(state.audit)
        state.audit = None
        emitter.set_sinks(())
        emitter.storm_limit, emitter.storm_window, emitter.capacity = 100, 1.0, 10_000
        emitter.service = os.environ.get(ENV_SERVICE) or os.environ.get("OTEL_SERVICE_NAME") or None
