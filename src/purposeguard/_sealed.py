"""Sealed storage: the wrapper a guarded value lives in, and pydantic's dump hooks.

A guarded record keeps each guarded value inside a :class:`Sealed` wrapper, so that the channels
which read an object's storage without going through its attributes (pydantic's serializer reads
``__dict__``; ``vars()``, ``copy`` and ``pickle`` do too) find a wrapper, not the value. The
wrapper's ``repr`` is redacted, its ``==`` and ``hash`` are guarded reads, it refuses pickling and
copying it copies the seal. Only the field descriptors and the serializer open it, after the
field decision (:mod:`purposeguard._fields`).
"""

from __future__ import annotations

import copy
import threading
import weakref
from typing import Any

from . import _time
from ._context import _current, resolve
from ._fields import FieldGuard, Record, admit, permits
from ._state import mode_for, state
from .exceptions import PurposeViolation, SealedPickleError

__all__ = [
    "Sealed",
    "dump_sealed",
    "exclude_sealed",
    "open_sealed",
    "pending",
    "register_for_unpickling",
    "seal",
    "unrestricted",
    "within_retention",
]

_get = _current.get
#: for unpickling a sealed value: field path → its guard (weak: guards die with their classes)
_fields_by_name: weakref.WeakValueDictionary[str, FieldGuard] = weakref.WeakValueDictionary()


def register_for_unpickling(guard: FieldGuard) -> None:
    """Let a value pickled from ``guard``'s field be unpickled sealed in this process."""
    _fields_by_name[guard.name] = guard


def unrestricted() -> bool:
    """True iff no subject has a restriction (or no registry is configured)."""
    registry = state.registry
    return registry is None or not registry.restricted


def within_retention(guard: FieldGuard, value: object, raw: object) -> bool:
    """The short path of a retained field, derived from the field decision: True iff ``value``
    is this field's seal, the purpose may use the field, the seal's record is within the
    retention period, and no subject is restricted. Anything else (consent, the registry, an
    expired or untimed record) takes the slow path, which decides and records."""
    binding = guard.binding
    period = binding.retention_us
    if period is None or type(value) is not Sealed or value._f is not guard:
        return False
    record = value._r
    at = record.collected_at if record is not None else None
    return (
        at is not None and raw in binding.usable and _time.now_us() < at + period and unrestricted()
    )


def open_sealed(value: Sealed, channel: str) -> Any:
    """The value inside ``value`` (and inside any seal within it), each seal checked."""
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        if not (raw in guard.allowed and unrestricted()) and not within_retention(
            guard, inner, raw
        ):
            admit(guard, inner._r, raw, channel)
        inner = inner._v
    return inner


class Sealed:
    """A guarded value at rest: ``_v`` the value, ``_f`` its field's guard, ``_r`` the facts of
    its record (consent, subject, collection time). Its ``repr`` is redacted; ``==`` and
    ``hash`` are guarded reads; it refuses pickling unless its model allows it; copies stay
    sealed."""

    __slots__ = ("_f", "_r", "_v")

    def __init__(self, value: Any, guard: FieldGuard, record: Record | None = None) -> None:
        self._v = value
        self._f = guard
        self._r = record

    def __repr__(self) -> str:
        return "<guarded>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<guarded>"

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, Sealed) and self._f.is_default(other):
            # pydantic's exclude_defaults compares a value with its field's default: the default
            # is public, and a non-default value is told apart from it without being read
            return bool(self._v == other)
        # one expression: an opened value is never a frame local while the other is checked
        return bool(
            open_sealed(self, "eq")
            == (open_sealed(other, "eq") if isinstance(other, Sealed) else other)
        )

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(open_sealed(self, "hash"))

    def __copy__(self) -> Sealed:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Sealed:
        return Sealed(copy.deepcopy(self._v, memo), self._f, self._r)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        guard = self._f
        if guard.pickle == "purpose":
            value = open_sealed(self, "pickle")
            return (_unpickle, (value, guard.name))
        raw = _get()
        if not permits(guard, resolve(raw), self._r):
            admit(guard, self._r, raw, "pickle")
        raise SealedPickleError(
            f"field {guard.name} holds guarded data and its model refuses pickling; pickle "
            "plain data read under a purpose, or set purposeguard_pickle = 'purpose' on the model"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


def _unpickle(value: Any, name: str) -> Any:
    guard = _fields_by_name.get(name)
    if guard is None:
        raise SealedPickleError(
            f"field {name} is not defined in this process; import its model before unpickling"
        )
    return Sealed(value, guard)


class _Resealed(Sealed):
    """A value sealed for another field, sealed again for this one: both must allow a use.
    Its own type keeps it off the fast paths, which test ``type(value) is Sealed``."""

    __slots__ = ()


def seal(guard: FieldGuard, value: Any, record: Record | None) -> Any:
    """``value`` sealed for ``guard``. ``None`` stays ``None`` (no data, and pydantic's
    ``exclude_none`` must still see it); a value sealed for another field keeps that seal too."""
    if value is None:
        return None
    if isinstance(value, Sealed) and value._f is guard:
        if value._r is record or value._r == record:
            return value
        return type(value)(value._v, guard, record)
    if isinstance(value, Sealed):
        return _Resealed(value, guard, record)
    return Sealed(value, guard, record)


# --- dumps ---------------------------------------------------------------------------------------


def dump_sealed(value: Any) -> Any:
    """pydantic serializer for a guarded field: the value, after the check; the purpose comes
    from the purpose context only."""
    if type(value) is Sealed and _get() in value._f.allowed:
        registry = state.registry
        if registry is None or not registry.restricted:
            return value._v
    elif type(value) is Sealed and within_retention(value._f, value, _get()):
        return value._v
    return _dump_slow(value)


class _Pending(threading.local):
    violation: PurposeViolation | None = None


#: the violation a dump raised last in this thread: pydantic wraps it (in JSON mode without a
#: ``__cause__``), and GuardedModel's dump methods raise it as itself
pending = _Pending()


def _dump_slow(value: Any) -> Any:
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        try:
            admit(guard, inner._r, raw, "dump")
        except PurposeViolation as exc:
            if guard.on_denied == "raise":
                pending.violation = exc
                raise
            return None  # redact (omit is decided earlier, by exclude_sealed)
        inner = inner._v
    return inner


def _denied_mode(guard: FieldGuard, record: Record | None, raw: object) -> str | None:
    """``None`` if the use is allowed, else the mode its violation would be recorded in."""
    purpose = resolve(raw)
    if permits(guard, purpose, record):
        return None
    _, tag = guard.decide(purpose)
    return mode_for(purpose, tag.mode if tag else None)


def exclude_sealed(value: Any) -> bool:
    """pydantic ``exclude_if`` for models that omit denied fields: True (leave the field out,
    recording the violation) iff the use is denied in enforce mode."""
    if not isinstance(value, Sealed):
        return False
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        if _denied_mode(guard, inner._r, raw) == "enforce":
            if guard.is_default(inner._v):
                return True  # the class's public default, not the subject's data: no record
            try:
                admit(guard, inner._r, raw, "dump")
            except PurposeViolation:
                return True
        inner = inner._v
    return False
