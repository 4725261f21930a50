"""Sealed storage: where a guarded record keeps its guarded values, and pydantic's dump hooks.

A record keeps all of its guarded values in one :class:`Vault`, together with what the record
says about itself (its consent, subject and collection time): one small slotted object per record,
so that guarding costs a record one allocation, not one per value. A pydantic model stores the
vault under each of its guarded fields' keys (pydantic's serializer reads ``__dict__`` by key); a
dataclass stores it in one attribute (or one slot). A value that must stand alone (a field with a
public default, which pydantic's ``exclude_defaults`` compares with that default; a value handed
from one record to another; a field of a class whose layout has no vault) is kept in a
:class:`Sealed` wrapper of its own.

Both are opaque: their ``repr`` is redacted, ``==`` and ``hash`` are guarded reads, they refuse
pickling unless the record's class allows it, and copies stay sealed. Only the field descriptors
and the serializers open them, after the field decision (:mod:`purposeguard._fields`).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from . import _time
from ._context import _current, resolve
from ._derivation import uncacheable
from ._fields import FieldGuard, PickleMode, Record, admit, field_guard, permits, record_of
from ._state import mode_for, state
from .exceptions import PurposeGuardError, PurposeViolation, SealedPickleError

__all__ = [
    "ABSENT",
    "IMPURE",
    "NO_FACTS",
    "already_sealed",
    "Sealed",
    "Shape",
    "Vault",
    "dump_sealed",
    "exclude_sealed",
    "field_dumper",
    "field_excluder",
    "open_sealed",
    "register_for_unpickling",
    "seal",
    "unrestricted",
    "within_retention",
]

_get = _current.get
#: A field a record does not hold (``model_construct`` without it, or deleted).
ABSENT: Final[Any] = type("_Absent", (), {"__repr__": lambda self: "<absent>"})()
#: for unpickling: field path → its guard, class path → its vault shape (weak: they die with
#: their classes)
_fields_by_name: weakref.WeakValueDictionary[str, FieldGuard] = weakref.WeakValueDictionary()
_shapes_by_path: weakref.WeakValueDictionary[str, Shape] = weakref.WeakValueDictionary()


def register_for_unpickling(guard: FieldGuard) -> None:
    """Let a value pickled from ``guard``'s field be unpickled sealed in this process."""
    _fields_by_name[guard.name] = guard


def unrestricted() -> bool:
    """True iff no subject has a restriction (or no registry is configured)."""
    registry = state.registry
    return registry is None or not registry.restricted


def _subject_unrestricted(subject: object) -> bool:
    """True iff the registry has nothing to say about ``subject`` (a str the registry keys, or
    no subject at all)."""
    registry = state.registry
    if registry is None or not registry.restricted or subject is None:
        return True
    return type(subject) is str and subject not in registry.restricted


# --- one value -----------------------------------------------------------------------------------


class Sealed:
    """A guarded value that stands alone: ``_v`` the value, ``_f`` its field's guard, ``_r`` the
    facts of its record (consent, subject, collection time)."""

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
        if not isinstance(other, Sealed | Vault) and self._f.is_default(other):
            # pydantic's exclude_defaults compares a value with its field's default: the default
            # is public, and a non-default value is told apart from it without being read
            return bool(self._v == other)
        # one expression: an opened value is never a frame local while the other is checked
        return bool(open_sealed(self, "eq") == _opened(other, "eq"))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(open_sealed(self, "hash"))

    def __copy__(self) -> Sealed:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Sealed:
        return type(self)(copy.deepcopy(self._v, memo), self._f, self._r)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        guard = self._f
        if guard.pickle == "purpose":
            value = open_sealed(self, "pickle")
            return (_unpickle, (value, guard.name))
        raw = _get()
        if not permits(guard, resolve(raw), self._r):
            admit(guard, self._r, raw, "pickle")
        raise SealedPickleError(_refused(guard.name))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


class _Resealed(Sealed):
    """A value sealed for another field, sealed again for this one: both must allow a use.
    Its own type keeps it off the fast paths, which test ``type(value) is Sealed``."""

    __slots__ = ()


def _refused(name: str) -> str:
    return (
        f"{name} holds guarded data and its class refuses pickling; pickle plain data read "
        "under a purpose, or set purposeguard_pickle = 'purpose' (pickle='purpose' for a "
        "dataclass)"
    )


def _unpickle(value: Any, name: str) -> Any:
    guard = _fields_by_name.get(name)
    if guard is None:
        raise SealedPickleError(
            f"field {name} is not defined in this process; import its class before unpickling"
        )
    return Sealed(value, guard)


def seal(guard: FieldGuard, value: Any, record: Record | None) -> Any:
    """``value`` sealed alone for ``guard``. ``None`` stays ``None`` (no data, and pydantic's
    ``exclude_none`` must still see it); a value sealed for another field keeps that seal too."""
    if value is None:
        return None
    if isinstance(value, Vault):
        value = value.standalone(guard.name.rpartition(".")[2])
    if isinstance(value, Sealed) and value._f is guard:
        if value._r is record or value._r == record:
            return value
        return type(value)(value._v, guard, record)
    if isinstance(value, Sealed):
        return _Resealed(value, guard, record)
    return Sealed(value, guard, record)


def within_retention(guard: FieldGuard, value: object, raw: object, index: int = -1) -> bool:
    """The short path of a retained field, derived from the field decision: True iff ``value``
    is this field's own seal (alone, or a pure vault that holds the field at ``index``), the
    purpose may use the field, the record is within the retention period, and no subject is
    restricted. Anything else (consent, the registry, an expired or untimed record) takes the
    slow path, which decides and records."""
    binding = guard.binding
    period = binding.retention_us
    if period is None or raw not in binding.usable:
        return False
    if type(value) is Vault:  # a pure one
        guards = value.shape.guards
        if not 0 <= index < len(guards) or guards[index] is not guard:
            return False
        at = value.facts[1]
    elif type(value) is Sealed and value._f is guard:
        record = value._r
        at = record.collected_at if record is not None else None
    else:
        return False
    if at is None or _time.now_us() >= at + period or not unrestricted():
        return False
    uncacheable()  # allowed by the clock: a cached value would outlive the retention period
    return True


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


def _opened(value: object, channel: str) -> Any:
    if isinstance(value, Sealed):
        return open_sealed(value, channel)
    if isinstance(value, Vault):
        return value.opened(channel)
    return value


# --- one record ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Shape:
    """What a vault holds, for one class: its path, the names of the fields it holds in vault
    order (the guarded ones first, their guards in ``guards``; a dataclass's vault also holds its
    consent, subject and collection-time fields, at the indexes ``meta`` gives, -1 if not held),
    each name's index, and the class's pickling option."""

    path: str
    names: tuple[str, ...]
    guards: tuple[FieldGuard, ...]
    pickle: PickleMode = "refuse"
    meta: tuple[int, int, int] = (-1, -1, -1)
    index: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "index", MappingProxyType({n: i for i, n in enumerate(self.names)})
        )

    def facts(self, values: tuple[Any, ...]) -> tuple[tuple[str, ...], Any, int | None]:
        """The record facts a vault of this shape states, from the meta values it holds."""
        consent, subject, collected = (
            _plain_value(values[i]) if i >= 0 else None for i in self.meta
        )
        return facts(consent, subject, collected)

    def register(self) -> None:
        """Let a vault pickled from this class be unpickled in this process."""
        _shapes_by_path[self.path] = self


def facts(consent: Any, subject: Any, collected: Any) -> tuple[tuple[str, ...], Any, int | None]:
    """A record's facts as a vault holds them: its consent as sorted purpose ids, its subject,
    its collection time in epoch microseconds."""
    if not consent and subject is None and collected is None:
        return ((), None, None)
    record = record_of(consent, subject, collected)
    return ((), None, None) if record is None else tuple(record)  # type: ignore[return-value]


def already_sealed(values: tuple[Any, ...], shape: Shape) -> bool:
    """Whether the values a record stores under its vaulted keys are its vault already (None
    where the vault holds None): nothing to seal."""
    vault: Vault | None = None
    for value in values:
        if value is None:
            continue
        if (
            not isinstance(value, Vault)
            or value.shape is not shape
            or (vault and value is not vault)
        ):
            return False
        vault = value
    return vault is not None and all(
        v is vault or (v is None and held is None)
        for v, held in zip(values, vault.values, strict=False)
    )


def _plain_value(value: Any) -> Any:
    while isinstance(value, Sealed):
        value = value._v
    return None if value is ABSENT else value


class Vault:
    """All guarded values of one record (``values``, in its class's :class:`Shape` order) and
    what the record says about itself (``consent``, ``subject``, ``collected_at`` in epoch
    microseconds; the first and last kept as ``facts``). A vault whose every value is plain data,
    present, is a ``Vault``; any other is an ``ImpureVault``: the fast paths read only a vault of
    exactly this type. Immutable: an assignment makes a new vault, so copies that share one never
    see each other's changes."""

    __slots__ = ("facts", "shape", "subject", "values")

    def __init__(
        self,
        values: tuple[Any, ...],
        shape: Shape,
        consent: tuple[str, ...] = (),
        subject: object = None,
        collected_at: int | None = None,
        pure: bool | None = None,
    ) -> None:
        self.values = values
        self.shape = shape
        self.subject = subject
        # (a model's compiled sealer makes a pure vault inline, the same way: _layout.py)
        self.facts = (consent, collected_at) if consent or collected_at is not None else NO_FACTS
        if not (IMPURE.isdisjoint(map(type, values)) if pure is None else pure):
            self.__class__ = ImpureVault

    @property
    def consent(self) -> tuple[str, ...]:
        return self.facts[0]

    @property
    def collected_at(self) -> int | None:
        return self.facts[1]

    @property
    def pure(self) -> bool:
        return type(self) is Vault

    @property
    def record(self) -> Record | None:
        """The record's facts, as the field decision takes them."""
        if not self.consent and self.subject is None and self.collected_at is None:
            return None
        return Record(self.consent, self.subject, self.collected_at)

    def unrestricted(self) -> bool:
        return _subject_unrestricted(self.subject)

    @classmethod
    def holding(cls, values: tuple[Any, ...], shape: Shape) -> Vault:
        """A vault whose facts are the meta values it holds (a dataclass's)."""
        return cls(values, shape, *shape.facts(values))

    def replaced(self, index: int, value: Any) -> Vault:
        """A vault like this one with ``value`` at ``index`` (its facts again, if it is one of
        the meta values it holds)."""
        values = (*self.values[:index], value, *self.values[index + 1 :])
        if index in self.shape.meta:
            return Vault.holding(values, self.shape)
        return Vault(values, self.shape, self.consent, self.subject, self.collected_at)

    def with_facts(self, record: Record | None) -> Vault:
        """A vault like this one for a record that states ``record``."""
        if record is None:
            return Vault(self.values, self.shape)
        return Vault(self.values, self.shape, record.consent, record.subject, record.collected_at)

    def open(self, index: int, channel: str) -> Any:
        """The value at ``index``, after the field decision for this record and purpose (each
        seal within it checked too). AttributeError if the record does not hold it."""
        guard = self.shape.guards[index]
        value = self.values[index]
        raw = _get()
        if not (raw in guard.allowed and self.unrestricted()) and not within_retention(
            guard, self, raw, index
        ):
            admit(guard, self.record, raw, channel)
        if value is ABSENT:
            raise AttributeError(self.shape.names[index])
        return open_sealed(value, channel) if isinstance(value, Sealed) else value

    def opened(self, channel: str) -> tuple[Any, ...]:
        """Every value held, each checked (a comparison or hash of the whole vault)."""
        guarded = len(self.shape.guards)
        return tuple(
            self.open(i, channel) for i, v in enumerate(self.values[:guarded]) if v is not ABSENT
        )

    def standalone(self, name: str) -> Any:
        """The value of field ``name`` sealed alone (None, or ABSENT), for handing it to
        another record: a copy made by ``dataclasses.replace``, or another class's field."""
        index = self.shape.index.get(name)
        if index is None or index >= len(self.shape.guards):
            raise PurposeGuardError(
                f"the guarded values of a {self.shape.path} record hold no field {name!r}; "
                "assign a value read under a purpose instead"
            )
        value = self.values[index]
        if value is None or value is ABSENT:
            return value
        guard = self.shape.guards[index]
        if isinstance(value, Sealed):
            return _Resealed(value, guard, self.record)
        return Sealed(value, guard, self.record)

    def __repr__(self) -> str:
        return "<guarded>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<guarded>"

    def __eq__(self, other: object) -> bool:
        """Every value checked (channel ``eq``). Against another vault: equal values, field by
        field. Against anything else (``vars(record)[name] == guess``: each guarded key holds the
        record's vault): whether the guess equals one of the record's guarded values."""
        if other is self:
            return True
        mine = self.opened("eq")
        if isinstance(other, Vault):
            return mine == other.opened("eq")
        guess = _opened(other, "eq")
        return any(value == guess for value in mine)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        opened = self.opened("hash")
        return hash(opened[0] if len(opened) == 1 else opened)  # one value: as that value

    def __copy__(self) -> Vault:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Vault:
        values = copy.deepcopy(self.values, memo)
        return Vault(values, self.shape, self.consent, self.subject, self.collected_at)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        shape = self.shape
        if shape.pickle == "purpose":
            guarded = len(shape.guards)
            values = tuple(
                v if i >= guarded or v is ABSENT else self.open(i, "pickle")
                for i, v in enumerate(self.values)
            )
            facts = (self.consent, self.subject, self.collected_at)
            return (_unpickle_vault, (values, shape.path, facts))
        for i, value in enumerate(self.values[: len(shape.guards)]):
            if value is not ABSENT and not permits(shape.guards[i], resolve(_get()), self.record):
                admit(shape.guards[i], self.record, _get(), "pickle")
        raise SealedPickleError(_refused(shape.path))

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


class ImpureVault(Vault):
    """A vault that holds a value sealed for another field, another vault, or a field not
    held: only the slow paths read it."""

    __slots__ = ()


#: the types that make a vault impure, which a sealer cannot put into a vault as they are: a
#: value that is itself sealed, or missing
IMPURE: Final = frozenset({Sealed, _Resealed, Vault, ImpureVault, type(ABSENT)})
#: the facts of a record that states no consent and no collection time
NO_FACTS: Final[tuple[tuple[str, ...], int | None]] = ((), None)


def _unpickle_vault(
    values: tuple[Any, ...], path: str, facts: tuple[tuple[str, ...], object, int | None]
) -> Vault:
    shape = _shapes_by_path.get(path)
    if shape is None or len(shape.names) != len(values):
        raise SealedPickleError(
            f"{path} is not defined in this process (or has other guarded fields); import its "
            "class before unpickling"
        )
    return Vault(values, shape, *facts)


# --- dumps ---------------------------------------------------------------------------------------


def dump_sealed(value: Any) -> Any:
    """pydantic serializer for a guarded value outside a model field (a ``TypeAdapter`` of an
    annotated type, a list item): the value, after the check; the purpose comes from the
    purpose context only."""
    if type(value) is Sealed and _get() in value._f.allowed and unrestricted():
        return value._v
    if type(value) is Sealed and within_retention(value._f, value, _get()):
        return value._v
    return _dump_slow(value) if isinstance(value, Sealed) else value


def _dump_slow(value: Any) -> Any:
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        try:
            admit(guard, inner._r, raw, "dump")
        except PurposeViolation:
            if guard.on_denied == "raise":
                raise
            return None  # redact (omit is decided earlier, by the excluder)
        inner = inner._v
    return inner


def field_dumper(name: str) -> Callable[[Any, Any], Any]:
    """pydantic field serializer for guarded field ``name`` (it gets the record and the stored
    value): the value, after the check. A plain value where a guarded one should be (stored
    around the model) is checked against the field too, never emitted unchecked.

    It runs once per guarded field of every record dumped, so its allow path is the shortest
    form of the field decision's fast path: the vault of the class it last saw (one serializer
    serves one field of one class, so that is nearly always the one), a purpose in the guard's
    allow set, a subject without restrictions."""
    seen: Shape | None = None
    index = 0
    guard: Any = None  # the guard, never its allow set: a new policy installs a new one

    def dump(
        record: Any, value: Any, _type: Any = type, _vault: Any = Vault, _get: Any = _current.get
    ) -> Any:
        nonlocal seen, index, guard
        if _type(value) is _vault:  # a pure vault
            if value.shape is seen and _get() in guard.allowed:
                subject = value.subject
                if subject is None:
                    return value.values[index]
                registry = state.registry
                if (
                    registry is None
                    or not registry.restricted
                    or (type(subject) is str and subject not in registry.restricted)
                ):
                    return value.values[index]
            found = value.shape.index.get(name)
            if found is None:
                return _dump_slow(value.standalone(name))
            field = value.shape.guards[found]
            if (_get() in field.allowed and value.unrestricted()) or within_retention(
                field, value, _get(), found
            ):
                seen, index, guard = value.shape, found, field
                return value.values[found]
            return _dump_slow(value.standalone(name))
        if isinstance(value, Vault):  # an impure one
            return _dump_slow(value.standalone(name))
        return _dump_other(record, name, value)

    dump.__purposeguard_dump__ = True  # type: ignore[attr-defined]
    return dump


def _dump_other(record: Any, name: str, value: Any) -> Any:
    """A guarded field's dump of a value that is not a vault: sealed alone, or plain."""
    if type(value) is Sealed:
        if _get() in value._f.allowed and unrestricted():
            return value._v
        if within_retention(value._f, value, _get()):
            return value._v
        return _dump_slow(value)
    if isinstance(value, Sealed):
        return _dump_slow(value)
    if value is not None:
        _dump_unsealed(record, name)
    return value


def _dump_unsealed(record: Any, name: str) -> None:
    """A plain value in a guarded field of a model (put there around the model, through
    ``__dict__``): it is dumped only if the record may be used for the purpose (recorded,
    raised in enforce mode). A dataclass's values reach its serializer already read through its
    descriptors, checked, and are not checked twice."""
    guard = field_guard(type(record), name)
    layout = getattr(type(record), "__purposeguard_layout__", None)
    if guard is None or layout is None or layout.reads_through_attributes:
        return
    admit(guard, layout.record(record), _get(), "dump")


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


def field_excluder(name: str) -> Callable[[Any], bool]:
    """:func:`exclude_sealed` for guarded field ``name`` of a model, whose stored value may be
    the record's vault."""

    def exclude(value: Any) -> bool:
        if type(value) is Vault:
            value = value.standalone(name)
        return exclude_sealed(value)

    return exclude
