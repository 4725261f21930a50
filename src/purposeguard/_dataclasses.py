"""Guarded data: ``@pg.guarded`` stdlib dataclasses, the dataclass front end.

The class's guarded fields are replaced by descriptors whose ``__get__`` is the allow fast path
of :mod:`purposeguard._layout`. A record keeps its guarded values in one vault, in the attribute
``__purposeguard__`` (in its first guarded field's slot for ``slots=True``), so ``vars()``,
copies and pickling never expose them. The vault also holds the record's consent, subject and
collection-time fields (their reads are not checked, and an assignment to one is in force at
the next read of a guarded field); the other fields are ordinary attributes. See
docs/models.md.

``__init__`` is compiled for the class (as ``dataclasses`` compiles its own) when the dataclass
is a plain one: every field an ``__init__`` parameter, none keyword-only, no ``InitVar``. The
record's vault is then built in one step. Any other dataclass keeps its own ``__init__``, whose
assignments of guarded fields are collected and put into the vault when it returns.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import replace as replace_layout
from datetime import datetime
from typing import Any, TypeVar, overload

from ._adopt import adopted, present
from ._asdict import clear_built
from ._fields import MISSING, FieldGuard, PickleMode
from ._frames import caller, channel_of
from ._inherit import guarded_bases
from ._layout import (
    VAULT_ATTRIBUTE,
    ClassBinder,
    Layout,
    check_options,
    collect,
    descriptor_get,
    facts_source,
    guarded_read,
    layout_of,
    metadata_of,
    plain_value,
    refuse_cached_properties,
    store_vault,
    vault_value,
)
from ._sealed import ABSENT, IMPURE, Sealed, Vault, facts
from ._state import register
from .exceptions import ConfigurationError, PurposeViolation

__all__ = ["guarded"]

C = TypeVar("C", bound=type)
#: the record whose own ``__init__`` is running, and the guarded values it assigned so far
_initializing: contextvars.ContextVar[tuple[object, list[Any]] | None] = contextvars.ContextVar(
    "purposeguard.initializing", default=None
)


class _Field:
    """The descriptor that replaces a guarded dataclass field (or its slot) on its class."""

    __slots__ = ("guard", "index", "name", "shape", "store")

    def __init__(self, name: str, guard: FieldGuard, layout: Layout) -> None:
        self.name = name
        self.guard = guard
        self.shape = layout.shape
        self.index = layout.shape.index[name]
        #: the slot member the vault lives in, for a slots=True dataclass
        self.store = layout.members.get(layout.vaulted[0]) if layout.storage == "slot" else None

    def _absent(self, obj: Any) -> Any:
        if obj is None:
            return self
        pending = _initializing.get()
        if pending is not None and pending[0] is obj and pending[1][self.index] is not ABSENT:
            # read while its own __init__ runs (a __post_init__): checked like any other read
            return guarded_read(obj, self.guard, pending[1][self.index], "attribute")
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")

    def _slow(self, obj: Any, vault: Any) -> Any:
        if not isinstance(vault, Vault):
            return self._absent(obj)
        channel = channel_of(caller(2))
        if channel == "replace":
            # dataclasses.replace copies: the copy gets the value sealed, nothing is read
            value = vault.values[self.index]
            if value is None or value is ABSENT or isinstance(value, Sealed):
                return value
            return Sealed(value, self.guard, layout_of(obj).record(obj))
        if channel not in ("asdict", "astuple"):
            return guarded_read(obj, self.guard, vault, channel)
        try:
            return guarded_read(obj, self.guard, vault, channel)
        except PurposeViolation:
            clear_built()  # what the conversion built must not stay in the traceback's frames
            raise

    def __set__(self, obj: Any, value: Any) -> None:
        pending = _initializing.get()
        if pending is not None and pending[0] is obj:
            pending[1][self.index] = value  # into the vault when __init__ returns
            return
        layout = layout_of(obj)
        vault = layout.vault_of(obj) or Vault.holding((ABSENT,) * len(layout.vaulted), self.shape)
        held = vault_value(self.shape, self.index, value)
        store_vault(layout, obj, vault.replaced(self.index, held))

    def __delete__(self, obj: Any) -> None:
        _delete(obj, self.index, self.name)


def _delete(obj: Any, index: int, name: str) -> None:
    """``del record.name`` of a value the vault holds: a new vault without it."""
    layout = layout_of(obj)
    vault = layout.vault_of(obj)
    if vault is None or vault.values[index] is ABSENT:
        raise AttributeError(name)
    store_vault(layout, obj, vault.replaced(index, ABSENT))


class _DictField(_Field):
    __slots__ = ()
    __get__ = descriptor_get("dict")


class _SlotField(_Field):
    __slots__ = ()
    __get__ = descriptor_get("slot")


class _MetaField:
    """The descriptor of a dataclass's consent, subject or collection-time field that is not
    itself guarded: its value lives in the record's vault, whose facts it is, unchecked."""

    __slots__ = ("index", "name", "shape")

    def __init__(self, name: str, layout: Layout) -> None:
        self.name = name
        self.shape = layout.shape
        self.index = layout.shape.index[name]

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        pending = _initializing.get()
        if pending is not None and pending[0] is obj:
            value = pending[1][self.index]
        else:
            vault = layout_of(obj).vault_of(obj)
            value = vault.values[self.index] if vault is not None else ABSENT
        if value is ABSENT:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        pending = _initializing.get()
        if pending is not None and pending[0] is obj:
            pending[1][self.index] = value
            return
        layout = layout_of(obj)
        vault = layout.vault_of(obj) or Vault.holding((ABSENT,) * len(layout.vaulted), self.shape)
        store_vault(layout, obj, vault.replaced(self.index, value))

    def __delete__(self, obj: Any) -> None:
        _delete(obj, self.index, self.name)


def _check_collected_at(obj: Any, layout: Layout) -> None:
    value = layout.collection_time(obj)
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(
            f"{layout.path}.{layout.collected} (pg.CollectedAt) must be a timezone-aware "
            "datetime, such as datetime.now(UTC): a naive datetime names no instant to count a "
            "retention from"
        )


def _repr(self: Any) -> str:
    layout: Layout = type(self).__purposeguard_layout__
    parts = []
    for f in dataclasses.fields(self):
        if not f.repr:
            continue
        if f.name in layout.guards:
            parts.append(f"{f.name}=<guarded>")
        else:
            parts.append(f"{f.name}={getattr(self, f.name)!r}")
    return f"{type(self).__qualname__}({', '.join(parts)})"


@overload
def guarded(cls: C, /) -> C: ...
@overload
def guarded(*, pickle: PickleMode | None = None) -> Callable[[C], C]: ...


def guarded(cls: Any = None, /, *, pickle: PickleMode | None = None) -> Any:
    """Guard a stdlib dataclass's ``CollectedFor`` fields: ``@pg.guarded`` above ``@dataclass``.

    Reads are checked (``getattr``, ``dataclasses.asdict``/``astuple``, the generated ``==`` and
    ``hash``); values are sealed in the instance, so ``vars()``, copies and pickling never expose
    them; ``repr`` is redacted; ``dataclasses.replace`` copies the seal. Works with ``frozen`` and
    ``slots=True`` dataclasses. A dataclass subclass of a guarded dataclass is guarded too,
    decorated or not, its fields' tags inherited (docs/models.md, "Subclasses"); ``pickle``
    is ``"refuse"`` unless set, a subclass's its base's. Returns a subclass of ``cls`` that
    keeps ``__dataclass_fields__`` out of its own ``__dict__``, so serializers that read
    dataclasses from C refuse it instead of reading it around the guards. Raises
    ConfigurationError if ``cls`` is not a stdlib dataclass.
    """

    frame = sys._getframe(1)
    localns = dict(frame.f_locals) if frame.f_code.co_name != "<module>" else None

    def decorate(klass: C) -> C:
        bases = guarded_bases(klass)
        inherited: PickleMode = bases[0].pickle if bases else "refuse"
        if adopted(klass):  # a subclass, guarded as @dataclass made it
            if pickle is not None and pickle != inherited:
                raise ConfigurationError(
                    f"{klass.__qualname__} inherits pickle={inherited!r} from its guarded base "
                    f"(a subclass is guarded as @dataclass makes it), not pickle={pickle!r}: "
                    "set it on the base"
                )
        else:
            _instrument(klass, inherited if pickle is None else pickle, localns)
        if not klass.__purposeguard_layout__.guards:  # type: ignore[attr-defined]
            return klass
        return present(klass, _adopt)  # type: ignore[return-value]

    return decorate if cls is None else decorate(cls)


def _adopt(cls: type, localns: dict[str, Any] | None) -> None:
    """Guard a plain dataclass subclass of a guarded dataclass, as its bases are."""
    (nearest, *_) = guarded_bases(cls)
    _instrument(cls, nearest.pickle, localns)


def _instrument(cls: type, pickle: PickleMode, localns: dict[str, Any] | None) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigurationError(
            f"@pg.guarded takes a dataclass, not {cls!r}: put it above @dataclass "
            "(for pydantic models, subclass pg.GuardedModel)"
        )
    if "__pydantic_validator__" in cls.__dict__ or "__pydantic_fields__" in cls.__dict__:
        raise ConfigurationError(
            f"@pg.guarded takes a stdlib dataclass, not the pydantic dataclass "
            f"{cls.__qualname__} (pydantic's own __init__ would store its values unsealed): "
            "subclass pg.GuardedModel for pydantic validation, or use @dataclasses.dataclass"
        )
    if "__purposeguard_layout__" in cls.__dict__:
        raise ConfigurationError(f"{cls.__qualname__} is already guarded")
    check_options(cls, "raise", pickle)
    refuse_cached_properties(cls)
    module = sys.modules.get(cls.__module__)
    try:
        hints = typing.get_type_hints(
            cls, globalns=vars(module) if module else None, localns=localns, include_extras=True
        )
    except NameError as exc:
        raise ConfigurationError(
            f"@pg.guarded cannot resolve the annotations of {cls.__qualname__} ({exc}); define "
            "the types it names at module level"
        ) from None
    path = f"{cls.__module__}.{cls.__qualname__}"
    fields = dataclasses.fields(cls)

    def default_of(f: dataclasses.Field[Any]) -> Any:
        return f.default if f.default is not dataclasses.MISSING else MISSING

    layout = collect(
        path,
        ((f.name, metadata_of(hints.get(f.name)), default_of(f)) for f in fields),
        "raise",  # pydantic dumps a dataclass through its attributes: reads
        pickle,
        guarded_bases(cls),
    )
    slotted = "__slots__" in cls.__dict__
    meta = [n for n in (layout.consent, layout.subject, layout.collected) if n is not None]
    vaulted = tuple(f.name for f in fields if f.name in layout.guards)
    if vaulted:  # the vault holds the facts of the record too (the guarded values first)
        vaulted += tuple(n for n in meta if n not in layout.guards)
    members = {n: _slot_member(cls, n) for n in vaulted} if slotted else {}
    layout = replace_layout(
        layout,
        storage="slot" if slotted else "dict",
        vaulted=vaulted,
        pickle=pickle,
        members=members,
    )
    for name, guard in layout.guards.items():
        setattr(cls, name, (_SlotField if slotted else _DictField)(name, guard, layout))
    for name in layout.vaulted:
        if name not in layout.guards:
            setattr(cls, name, _MetaField(name, layout))
    cls.__purposeguard_layout__ = layout  # type: ignore[attr-defined]
    cls.__purposeguard_fields__ = layout.tags  # type: ignore[attr-defined]
    binder = ClassBinder(path, (f.name for f in fields), layout.guards)
    register(binder)
    cls.__purposeguard_binder__ = binder  # type: ignore[attr-defined]
    if not layout.guards:
        return
    init = _compiled_init(cls, layout, fields) if _plain_dataclass(cls, fields) else None
    setattr(cls, "__init__", init or _sealing_after(cls, layout))  # noqa: B010
    if cls.__dataclass_params__.repr:  # type: ignore[attr-defined]
        setattr(cls, "__repr__", _repr)  # noqa: B010
    if slotted:
        _pickle_slots(cls, layout, tuple(f.name for f in fields))


def _slot_member(cls: type, name: str) -> Any:
    """The slot member descriptor of field ``name``: the class's own, or the one a guarded base
    replaced with its descriptor."""
    for klass in cls.__mro__:
        own = klass.__dict__.get(name)
        if isinstance(own, types.MemberDescriptorType):
            return own
        layout = klass.__dict__.get("__purposeguard_layout__")
        if layout is not None and name in layout.members:
            return layout.members[name]
    raise ConfigurationError(f"{cls.__qualname__}.{name}: no slot holds this field")


def _plain_dataclass(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> bool:
    """Whether ``cls``'s ``__init__`` is the one ``dataclasses`` writes for plain fields: every
    field a positional-or-keyword parameter, no ``InitVar``."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    declared = cls.__dataclass_fields__.values()  # type: ignore[attr-defined]
    return (
        params.init
        and initvar is not None
        and not any(getattr(f, "_field_type", None) is initvar for f in declared)
        and all(f.init and not f.kw_only for f in fields)
    )


def _compiled_init(
    cls: type, layout: Layout, fields: tuple[dataclasses.Field[Any], ...]
) -> Callable[..., None]:
    """The ``__init__`` of a plain guarded dataclass, compiled: it assigns the unguarded fields
    as ``dataclasses`` would and builds the record's vault in one step."""
    frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {
        "__name__": f"{__name__}.init",
        "Vault": Vault,
        "holding": Vault.holding,
        "facts": facts,
        "plain": plain_value,
        "SHAPE": layout.shape,
        "IMPURE": IMPURE,
        "FACTORY": ABSENT,
        "vault_value": vault_value,
        "set": object.__setattr__,
        "check_collected_at": functools.partial(_check_collected_at, layout=layout),
    }
    params, body = ["self"], []
    for f in fields:
        if f.default is not dataclasses.MISSING:
            namespace[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=FACTORY")
            body.append(f"    if {f.name} is FACTORY:\n        {f.name} = _f_{f.name}()")
        else:
            params.append(f.name)
    for f in fields:
        if f.name in layout.vaulted:
            continue
        body.append(
            f"    set(self, {f.name!r}, {f.name})" if frozen else f"    self.{f.name} = {f.name}"
        )
    values = "".join(f"{n}, " for n in layout.vaulted)
    if layout.storage == "slot":
        namespace["VAULT_SLOT"] = layout.members[layout.vaulted[0]]
        store = "    VAULT_SLOT.__set__(self, vault)"
    elif frozen:
        store = f"    set(self, {VAULT_ATTRIBUTE!r}, vault)"
    else:
        store = f"    self.{VAULT_ATTRIBUTE} = vault"
    body += [
        f"    values = ({values})",
        "    if IMPURE.isdisjoint(map(type, values)):",
        f"        vault = Vault(values, SHAPE, *{facts_source(layout, lambda n: n)}, True)",
        "    else:",
        "        values = tuple(vault_value(SHAPE, i, v) for i, v in enumerate(values))",
        "        vault = holding(values, SHAPE)",
        store,
    ]
    if layout.collected is not None:
        body.append("    check_collected_at(self)")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__({', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(compile(source, f"<purposeguard __init__ of {layout.path}>", "exec"), namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__  # type: ignore[misc]
    return init


def _sealing_after(cls: type, layout: Layout) -> Callable[..., None]:
    """Wrap a dataclass's own ``__init__``: the guarded values it assigns are collected, and put
    into the record's vault when it returns. Meanwhile (``__post_init__`` included) a read of
    one is checked like any other."""
    original_init = cls.__init__  # type: ignore[misc]
    set_pending, reset_pending = _initializing.set, _initializing.reset
    shape, collected = layout.shape, layout.collected

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        values = [ABSENT] * len(layout.vaulted)
        token = set_pending((self, values))
        try:
            original_init(self, *args, **kwargs)
        finally:
            reset_pending(token)
        held = tuple(vault_value(shape, i, v) for i, v in enumerate(values))
        store_vault(layout, self, Vault.holding(held, shape))
        if collected is not None:
            _check_collected_at(self, layout)

    return __init__


def _pickle_slots(cls: type, layout: Layout, names: tuple[str, ...]) -> None:
    """A slotted dataclass pickles (and copies) its slots: the vault, never the values."""
    members = {n: cls.__dict__[n] for n in names if n not in layout.vaulted}
    members.update(layout.members)
    slots = tuple(n for n in names if n not in layout.vaulted[1:])  # the vault's slot, the rest

    def __getstate__(self: Any) -> list[Any]:
        return [_slot_get(members[n], self) for n in slots]

    def __setstate__(self: Any, state: list[Any]) -> None:
        for n, value in zip(slots, state, strict=True):
            members[n].__set__(self, value)

    setattr(cls, "__getstate__", __getstate__)  # noqa: B010
    setattr(cls, "__setstate__", __setstate__)  # noqa: B010


def _slot_get(member: Any, obj: Any) -> Any:
    try:
        return member.__get__(obj, type(obj))
    except AttributeError:
        return None
