"""How a guarded dataclass presents itself to code that is not purposeguard's.

**Serializers that read a dataclass themselves.** orjson serializes a dataclass from C, reading
its instance ``__dict__`` (where a guarded record has only its vault, so the guarded fields go
missing without a word) or, for ``slots=True``, each field with a C ``getattr`` whose failure it
does not check: a denied read kills the interpreter. orjson takes a type for a dataclass only
when ``__dataclass_fields__`` is in the type's own ``__dict__``, while ``dataclasses``,
pydantic, FastAPI and msgspec find it through the bases. So a guarded dataclass keeps it one
class up: ``@pg.guarded`` returns a subclass of the class it decorated that has nothing of its
own, and a guarded subclass gets a base between it and its bases that holds it. orjson then
refuses the record loudly (a ``TypeError``, or its ``default=`` hook, such as
:func:`purposeguard.serialize.json_default`).

**Subclasses.** A ``@dataclass`` subclass of a guarded dataclass, decorated or not, would write
its own ``__init__``, ``__repr__`` and defaults over the guarded ones. It is guarded as soon as
``@dataclass`` has made it, tags inherited (:mod:`._inherit`): ``__init_subclass__`` runs too
early for that, but ``@dataclass`` ends with ``abc.update_abstractmethods(cls)``, which looks up,
on the new class, every name its bases list in ``__abstractmethods__``. A guarded dataclass
lists one name there, in a set that is false (so the class stays concrete), and that name's
descriptor guards the class that looks it up.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["adopted", "present"]

_lock = threading.RLock()
#: a class purposeguard made, which is neither guarded nor holds a hook
_OURS: Final = "__purposeguard_presents__"
#: where a subclass keeps the namespace it was defined in, until it is guarded
_LOCALS: Final = "__purposeguard_locals__"
#: the name ``abc.update_abstractmethods`` looks up
_HOOK: Final = "__purposeguard_adopt__"
#: set on a class that was guarded as a subclass, with the pickle mode it inherited
_ADOPTED: Final = "__purposeguard_adopted__"

Adopt = Callable[[type, "dict[str, Any] | None"], None]


class _Concrete(frozenset[str]):
    """``__abstractmethods__`` of a class with no abstract method: names, yet false."""

    def __bool__(self) -> bool:
        return False


class _AdoptOnLookup:
    """Guards the subclass that looks it up (see the module docstring)."""

    def __init__(self, adopt: Adopt) -> None:
        self.adopt = adopt

    def __get__(self, obj: Any, owner: type | None = None) -> None:
        if obj is None and owner is not None:
            with _lock:
                if _LOCALS in owner.__dict__ and "__dataclass_fields__" in owner.__dict__:
                    localns = owner.__dict__[_LOCALS]
                    type.__delattr__(owner, _LOCALS)
                    self.adopt(owner, localns)
                    type.__setattr__(owner, _ADOPTED, True)
                    _hold_fields(owner)
        return


def present(cls: type, adopt: Adopt) -> type:
    """What ``@pg.guarded`` returns for the guarded dataclass ``cls``: ``cls`` itself if it
    is a subclass that has been guarded already, else a subclass of it with nothing of its own.
    ``adopt(sub, localns)`` guards a subclass of it."""
    _arm(cls, adopt)
    if cls.__dict__.get(_ADOPTED):
        return cls
    return type(cls)(
        cls.__name__,
        (cls,),
        {
            "__slots__": (),
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            _OURS: True,
        },
    )


def adopted(cls: type) -> bool:
    """Whether ``cls`` was guarded as a subclass of a guarded dataclass."""
    return bool(cls.__dict__.get(_ADOPTED))


def _arm(cls: type, adopt: Adopt) -> None:
    """Make every subclass of ``cls`` guarded when ``@dataclass`` has made it."""
    if _HOOK in cls.__dict__:
        return
    own = cls.__dict__.get("__init_subclass__")

    def __init_subclass__(sub: type, /, **kwargs: Any) -> None:
        if own is not None:
            own.__get__(None, sub)(**kwargs)
        else:
            super(cls, sub).__init_subclass__(**kwargs)  # type: ignore[arg-type]
        if sub.__dict__.get(_OURS):
            return
        if _LOCALS not in sub.__dict__:  # (dataclass(slots=True) makes the class again)
            frame = sys._getframe(1)
            local = frame.f_code.co_name != "<module>" and frame.f_globals is not vars(dataclasses)
            type.__setattr__(sub, _LOCALS, dict(frame.f_locals) if local else None)
        for base in sub.__bases__:
            if hasattr(base, _HOOK):
                _list_hook(base)
        if "__abstractmethods__" not in sub.__dict__:
            type.__setattr__(sub, "__abstractmethods__", _Concrete())

    type.__setattr__(cls, _HOOK, _AdoptOnLookup(adopt))
    type.__setattr__(cls, "__init_subclass__", classmethod(__init_subclass__))


def _list_hook(base: type) -> None:
    """List the hook in ``base``'s ``__abstractmethods__`` (which ``update_abstractmethods``
    rewrites for every class it processes), keeping whether ``base`` is abstract."""
    current = base.__dict__.get("__abstractmethods__", frozenset())
    if _HOOK not in current:
        names = current | {_HOOK}
        listed = frozenset(names) if current else _Concrete(names)
        type.__setattr__(base, "__abstractmethods__", listed)


def _hold_fields(klass: type) -> None:
    """Move ``klass``'s ``__dataclass_fields__`` into a class between it and its bases."""
    holder = type(klass)(
        klass.__name__,
        klass.__bases__,
        {
            "__slots__": (),
            "__module__": klass.__module__,
            "__qualname__": klass.__qualname__,
            "__dataclass_fields__": klass.__dict__["__dataclass_fields__"],
            _OURS: True,
        },
    )
    try:
        klass.__bases__ = (holder,)
    except TypeError:  # a layout the assignment refuses (several bases): orjson still sees it
        return
    type.__delattr__(klass, "__dataclass_fields__")
