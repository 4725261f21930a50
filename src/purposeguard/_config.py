"""The façade: ``configure()``, ``reload_policy()``, ``get_policy()``, ``flush()`` and
``reset()``.

It sits above everything it configures (as structlog's ``_config.py``): it loads policy files,
opens audit logs and subject registries, and installs them in the one process state
(:mod:`purposeguard._state`), which is all the core reads. ``configure()`` changes only what it
is given. A policy swap is validated against every registered guard first, then installed; a
bad policy never replaces a good one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import structlog

from ._cache import check_accessor_modules
from ._compile import compile_policy
from ._emitter import emitter
from ._load import load_policy
from ._policy import Mode, Policy
from ._state import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_STORM_LIMIT,
    DEFAULT_STORM_WINDOW,
    Sink,
    SubjectRestrictions,
    install_policy,
    lock,
    mode_for,
    policy_fields,
    state,
)
from .exceptions import ConfigurationError
from .registry import Registry
from .sinks.audit import AUDIT_KEY_ENV, AuditLog

__all__ = [
    "ENV_AUDIT_KEY",
    "ENV_SERVICE",
    "configure",
    "flush",
    "get_policy",
    "reload_policy",
    "reset",
]

#: Environment variable: the HMAC key (text) for audit-log headers and checkpoints, when
#: ``configure(audit_key=)`` is not given.
ENV_AUDIT_KEY: Final = AUDIT_KEY_ENV
#: Environment variable: the ``service`` written into every event (else ``OTEL_SERVICE_NAME``).
ENV_SERVICE: Final = "PURPOSEGUARD_SERVICE"


class _Unset:
    """The default of every ``configure()`` argument: "leave this as it is"."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()
_MODES = ("enforce", "monitor")
#: what a registry object must have (the SubjectRestrictions protocol)
_REGISTRY_MEMBERS = ("restricted", "consenting", "use_suspension", "purpose_consent", "close")


def _service_from_env() -> str | None:
    return os.environ.get(ENV_SERVICE) or os.environ.get("OTEL_SERVICE_NAME") or None


def configure(
    *,
    policy: Policy | str | os.PathLike[str] | _Unset | None = _UNSET,
    mode: Mode | _Unset | None = _UNSET,
    audit_log: str | os.PathLike[str] | Sink | _Unset | None = _UNSET,
    audit_key: bytes | str | _Unset | None = _UNSET,
    subject_key: bytes | str | _Unset | None = _UNSET,
    service: str | _Unset | None = _UNSET,
    storm_limit: int | _Unset = _UNSET,
    storm_window: float | _Unset = _UNSET,
    buffer_size: int | _Unset = _UNSET,
    registry: SubjectRestrictions | str | os.PathLike[str] | _Unset | None = _UNSET,
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

    Raises :class:`ConfigurationError` for a bad argument, or when given a policy, for a
    functools cache around a guarded accessor in a module that defines accessors
    (docs/caching.md), and :class:`PolicyError` if the policy is invalid or does not declare a
    purpose that a guard already defined uses; either way nothing changes.
    """
    # Arguments are checked before anything changes: a bad one leaves the configuration as it was.
    if not isinstance(mode, _Unset) and mode is not None and mode not in _MODES:
        raise ConfigurationError(f"mode must be 'enforce', 'monitor' or None, not {mode!r}")
    limits = {"storm_limit": storm_limit, "storm_window": storm_window, "buffer_size": buffer_size}
    for name, value in limits.items():
        if not isinstance(value, _Unset):
            _positive(name, value)
    if not isinstance(audit_key, _Unset) and isinstance(audit_log, _Unset):
        raise ConfigurationError("audit_key= is given without audit_log=; pass both")
    if (
        not isinstance(registry, _Unset | str | os.PathLike)
        and registry is not None
        and not all(hasattr(registry, name) for name in _REGISTRY_MEMBERS)
    ):
        raise ConfigurationError(
            f"registry= takes a purposeguard.Registry or a path, not {type(registry).__name__}"
        )
    with lock:
        if not isinstance(policy, _Unset) and policy is not None:
            check_accessor_modules()  # code that a policy would not make safe: before any change
        before = _effective_modes()
        if not isinstance(service, _Unset):  # first: every event of this call carries it
            state.service = service
        if not isinstance(audit_log, _Unset):  # then the log, so it records the policy below
            _set_audit(audit_log, None if isinstance(audit_key, _Unset) else audit_key)
        if not isinstance(policy, _Unset):
            _set_policy(policy)
        if not isinstance(mode, _Unset):
            state.mode_override = mode
        if not isinstance(subject_key, _Unset):
            state.subject_key = (
                subject_key.encode() if isinstance(subject_key, str) else subject_key
            )
        if not isinstance(storm_limit, _Unset):
            state.storm_limit = storm_limit
        if not isinstance(storm_window, _Unset):
            state.storm_window = storm_window
        if not isinstance(buffer_size, _Unset):
            state.buffer_size = buffer_size
        if not isinstance(registry, _Unset):
            _set_registry(registry)
        _record_mode_changes(before)


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
    if name != "storm_window" and not isinstance(value, int):
        raise ConfigurationError(f"{name} must be a positive whole number, not {value!r}")


def _effective_modes() -> dict[str, Mode]:
    compiled = state.compiled
    modes: dict[str, Mode] = {"*": mode_for(None, None)}
    if compiled is not None:
        modes.update({f"purposes.{p}": m for p, m in compiled.modes.items()})
        modes.update({f"fields.{f}": t.mode for f, t in compiled.field_tags.items() if t.mode})
    return modes


def _record_mode_changes(before: dict[str, Mode]) -> None:
    after = _effective_modes()
    if before != after:
        changes = {
            key: [before.get(key), after.get(key)]
            for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)
        }
        emitter.record("purposeguard.mode_change", {"changes": changes, **policy_fields()})


def _set_policy(policy: Policy | str | os.PathLike[str] | None) -> None:
    if policy is None:
        install_policy(None)
        return
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    install_policy(compile_policy(policy))
    emitter.record("purposeguard.policy_loaded", {"source": policy.source, **policy_fields()})


def reload_policy() -> None:
    """Load the configured policy file again and swap it in.

    On any error the last good policy stays in force, a ``purposeguard.policy_reload_failed``
    event is recorded, and the :class:`PolicyError` (or, for a functools cache around a guarded
    accessor, the :class:`ConfigurationError`) is raised.
    """
    with lock:
        compiled = state.compiled
        source = compiled.policy.source if compiled else None
        if source is None:
            raise ConfigurationError("no policy file is configured; call configure(policy=PATH)")
        before = _effective_modes()
        try:
            check_accessor_modules()
            install_policy(compile_policy(load_policy(source)))
        except ConfigurationError as exc:  # PolicyError is one
            emitter.record(
                "purposeguard.policy_reload_failed",
                {"source": source, "error": str(exc), **policy_fields()},
            )
            raise
        emitter.record("purposeguard.policy_reload", {"source": source, **policy_fields()})
        _record_mode_changes(before)


def _set_audit(audit_log: str | os.PathLike[str] | Sink | None, key: bytes | str | None) -> None:
    old = state.audit
    new: Sink | None
    if audit_log is None:
        new = None
    elif isinstance(audit_log, str | os.PathLike):
        new = AuditLog(Path(audit_log), key=key.encode() if isinstance(key, str) else key)
    else:
        new = audit_log
    emitter.flush()
    state.audit = new
    emitter.set_sinks(() if new is None else (new,))
    if old is not None and old is not new:
        _close_quietly(old)


def _set_registry(registry: SubjectRestrictions | str | os.PathLike[str] | None) -> None:
    owned = isinstance(registry, str | os.PathLike)
    if isinstance(registry, str | os.PathLike):
        registry = Registry(registry)
    old, old_owned = state.registry, state.registry_owned
    state.registry, state.registry_owned = registry, owned
    if old is not None and old is not registry and old_owned:
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


def flush(timeout: float = 5.0) -> bool:
    """Deliver every buffered log line and audit record now (storm summaries included); True
    if everything made it within ``timeout`` seconds."""
    return emitter.flush(timeout)


def reset() -> None:
    """Forget all configuration (for tests): no policy, no override, no audit log, no
    registry, default limits, the service from the environment."""
    with lock:
        emitter.flush()
        install_policy(None)
        state.mode_override = None
        state.subject_key = None
        registry, owned = state.registry, state.registry_owned
        state.registry, state.registry_owned = None, False
        if registry is not None and owned:
            registry.close()  # a registry the caller built is the caller's to close
        if state.audit is not None:
            _close_quietly(state.audit)
        state.audit = None
        emitter.set_sinks(())
        state.storm_limit = DEFAULT_STORM_LIMIT
        state.storm_window = DEFAULT_STORM_WINDOW
        state.buffer_size = DEFAULT_BUFFER_SIZE
        state.service = _service_from_env()


state.service = _service_from_env()
