"""Guarded data: ``@pg.guarded`` stdlib dataclasses, the dataclass front end.

The class's guarded fields are replaced by descriptors whose ``__get__`` is the allow fast path
of :mod:`purposeguard._layout`; values are sealed in the instance (its ``__dict__`` or its
slots), so ``vars()``, copies and pickling never expose them. See docs/models.md.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import sys
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, overload

from ._fields import MISSING, FieldGuard, PickleMode
from ._frames import caller, channel_of
from ._layout import (
    ClassBinder,
    Layout,
    check_options,
    collect,
    descriptor_get,
    guarded_read,
    metadata_of,
)
from ._sealed import Sealed, seal
from ._state import register
from .exceptions import ConfigurationError

__all__ = ["guarded"]

C = TypeVar("C", bound=type)
#: the record whose ``__init__`` is running: its guarded values are sealed once, at the end
_initializing: contextvars.ContextVar[object] = contextvars.ContextVar(
    "purposeguard.initializing", default=None
)


class _Field:
    """The descriptor that replaces a guarded dataclass field (or its slot) on its class."""

    __slots__ = ("guard", "member", "name")

    def __init__(self, name: str, guard: FieldGuard, member: Any) -> None:
        self.name = name
        self.guard = guard
        self.member = member  # the slot's member descriptor for slots=True, else None

    def _absent(self, obj: Any) -> Any:
        if obj is None:
            return self
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")

    def _slow(self, obj: Any, value: Any) -> Any:
        channel = channel_of(caller(2))
        if channel == "replace" and isinstance(value, Sealed):
            return value  # dataclasses.replace copies: the copy keeps the seal, nothing is read
        return guarded_read(obj, self.guard, value, channel)

    def __set__(self, obj: Any, value: Any) -> None:
        if _initializing.get() is obj:
            self._store(obj, value)  # sealed with the others when __init__ returns
            return
        layout: Layout = type(obj).__purposeguard_layout__
        self._store(obj, seal(self.guard, value, layout.record(obj)))

    def _store(self, obj: Any, sealed: Any) -> None:
        if self.member is not None:
            self.member.__set__(obj, sealed)
        else:
            obj.__dict__[self.name] = sealed

    def __delete__(self, obj: Any) -> None:
        if self.member is not None:
            self.member.__delete__(obj)
        else:
            del obj.__dict__[self.name]


class _DictField(_Field):
    __slots__ = ()
    __get__ = descriptor_get("dict")


class _SlotField(_Field):
    __slots__ = ()
    __get__ = descriptor_get("slot")


class _MetaField:
    """Replaces a dataclass's consent, subject or collection-time field (when it is not itself
    guarded): assigning it re-seals the record's guarded values, whose seals carry them."""

    __slots__ = ("member", "name")

    def __init__(self, name: str, member: Any) -> None:
        self.name = name
        self.member = member  # the slot's member descriptor for slots=True, else None

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        if self.member is not None:
            return self.member.__get__(obj, owner)
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(
                f"{type(obj).__name__!r} object has no attribute {self.name!r}"
            ) from None

    def __set__(self, obj: Any, value: Any) -> None:
        if self.member is not None:
            self.member.__set__(obj, value)
        else:
            obj.__dict__[self.name] = value
        if _initializing.get() is not obj:
            type(obj).__purposeguard_layout__.seal(obj)

    def __delete__(self, obj: Any) -> None:
        if self.member is not None:
            self.member.__delete__(obj)
        else:
            del obj.__dict__[self.name]


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
def guarded(*, pickle: PickleMode = "refuse") -> Callable[[C], C]: ...


def guarded(cls: Any = None, /, *, pickle: PickleMode = "refuse") -> Any:
    """Guard a stdlib dataclass's ``CollectedFor`` fields: ``@pg.guarded`` above ``@dataclass``.

    Reads are checked (``getattr``, ``dataclasses.asdict``/``astuple``, the generated ``==`` and
    ``hash``); values are sealed in the instance, so ``vars()``, copies and pickling never expose
    them; ``repr`` is redacted; ``dataclasses.replace`` copies the seal. Works with ``frozen`` and
    ``slots=True`` dataclasses. Raises ConfigurationError if ``cls`` is not a dataclass.
    """

    frame = sys._getframe(1)
    localns = dict(frame.f_locals) if frame.f_code.co_name != "<module>" else None

    def decorate(klass: C) -> C:
        _instrument(klass, pickle, localns)
        return klass

    return decorate if cls is None else decorate(cls)


def _instrument(cls: type, pickle: PickleMode, localns: dict[str, Any] | None) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigurationError(
            f"@pg.guarded takes a dataclass, not {cls!r}: put it above @dataclass "
            "(for pydantic models, subclass pg.GuardedModel)"
        )
    if "__purposeguard_layout__" in cls.__dict__:
        raise ConfigurationError(f"{cls.__qualname__} is already guarded")
    check_options(cls, "raise", pickle)
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
    )
    guards = layout.guards
    meta_names = [n for n in (layout.consent, layout.subject, layout.collected) if n is not None]
    slotted = "__slots__" in cls.__dict__
    if slotted:
        layout = layout.with_members(
            {f.name: cls.__dict__[f.name] for f in fields if f.name in (*guards, *meta_names)}
        )
    for name, guard in guards.items():
        member = layout.members.get(name)
        setattr(cls, name, (_SlotField if slotted else _DictField)(name, guard, member))
    for name in meta_names if guards else ():
        if name not in guards:
            setattr(cls, name, _MetaField(name, layout.members.get(name)))
    cls.__purposeguard_layout__ = layout  # type: ignore[attr-defined]
    cls.__purposeguard_fields__ = layout.tags  # type: ignore[attr-defined]
    binder = ClassBinder(path, (f.name for f in fields), guards)
    register(binder)
    cls.__purposeguard_binder__ = binder  # type: ignore[attr-defined]
    if guards:
        _seal_after_init(cls, layout)
    if guards and cls.__dataclass_params__.repr:  # type: ignore[attr-defined]
        setattr(cls, "__repr__", _repr)  # noqa: B010
    if slotted and guards:
        _pickle_slots(cls, layout, tuple(f.name for f in fields))


def _seal_after_init(cls: type, layout: Layout) -> None:
    """Wrap ``__init__``: the guarded values it assigns are sealed all at once when it returns,
    with the record's consent, subject and collection time (assigned in any order). Meanwhile
    (``__post_init__`` included) a read of one is checked like any other."""
    original_init = cls.__init__  # type: ignore[misc]
    set_initializing, reset_initializing = _initializing.set, _initializing.reset
    seal_record, collected = layout.seal, layout.collected

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        token = set_initializing(self)
        try:
            original_init(self, *args, **kwargs)
        finally:
            reset_initializing(token)
        if collected is not None:
            _check_collected_at(self, layout)
        seal_record(self)

    setattr(cls, "__init__", __init__)  # noqa: B010


def _pickle_slots(cls: type, layout: Layout, names: tuple[str, ...]) -> None:
    """A slotted dataclass pickles its slots: the seals, not the values."""
    members = {n: cls.__dict__[n] for n in names if n not in layout.guards}
    members.update({n: layout.members[n] for n in layout.guards})

    def __getstate__(self: Any) -> list[Any]:
        return [_slot_get(members[n], self) for n in names]

    def __setstate__(self: Any, state: list[Any]) -> None:
        for n, value in zip(names, state, strict=True):
            members[n].__set__(self, value)

    setattr(cls, "__getstate__", __getstate__)  # noqa: B010
    setattr(cls, "__setstate__", __setstate__)  # noqa: B010


def _slot_get(member: Any, obj: Any) -> Any:
    try:
        return member.__get__(obj, type(obj))
    except AttributeError:
        return None
