"""What purposeguard knows about one guarded class, and the code both front ends (pydantic
models and dataclasses) run for its records.

:func:`collect` reads a class's field markers once, when the class is created, into a frozen
:class:`Layout`. From it, per class, two functions are compiled from fixed templates (the way
attrs writes ``__init__``): the descriptors' ``__get__``, which is the allow fast path of a read,
and the record's sealer, which puts its guarded values into one :class:`~._sealed.Vault`. Both
are derived from the field decision (:mod:`purposeguard._fields`): a purpose in
``guard.allowed``, a subject without restrictions, the record's own vault. Anything else takes
the slow path, which asks the field decision itself.

Where a record keeps its vault (``storage``): a pydantic model under each guarded field's key of
its ``__dict__`` (``model``; pydantic's serializer reads values by key), a dataclass in one
attribute, ``__purposeguard__`` (``dict``), or a ``slots=True`` dataclass in its first guarded
field's slot (``slot``).
"""

from __future__ import annotations

import functools
import operator
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ._compile import CompiledPolicy, Tag
from ._context import _current
from ._fields import FieldGuard, OnDenied, PickleMode, Record, admit, record_of
from ._inherit import Inherited, inherit, own_markers
from ._markers import CollectedAt, CollectedFor, Consent, SubjectId, is_marker
from ._sealed import (
    ABSENT,
    IMPURE,
    NO_FACTS,
    Sealed,
    Shape,
    Vault,
    already_sealed,
    facts,
    open_sealed,
    register_for_unpickling,
    seal,
    within_retention,
)
from ._state import SubjectRestrictions, register, state
from .exceptions import ConfigurationError, PolicyError

__all__ = [
    "VAULT_ATTRIBUTE",
    "ClassBinder",
    "Layout",
    "Storage",
    "check_options",
    "collect",
    "refuse_cached_properties",
    "descriptor_get",
    "facts_source",
    "guarded_read",
    "layout_of",
    "metadata_of",
    "plain_value",
]

_get = _current.get
Storage = Literal["model", "dict", "slot"]
#: The attribute a dataclass keeps its vault in.
VAULT_ATTRIBUTE = "__purposeguard__"


@dataclass(frozen=True, slots=True)
class Layout:
    """What purposeguard knows about one class, computed once when the class is created.

    ``guards`` maps each guarded field to its guard; ``tags`` the fields tagged by the class
    itself to their first tag; ``consent``, ``subject`` and ``collected`` name the record's
    meta fields; ``policy_only`` the fields only the policy's ``fields:`` tags. ``storage`` is
    where a record keeps its vault, ``vaulted`` the fields the vault holds (the guarded ones
    first; a model's guarded fields with a public default are sealed one by one instead; a
    dataclass's vault holds its meta fields too), ``members`` the slot member descriptors of a
    ``slots=True`` dataclass.
    """

    path: str
    guards: Mapping[str, FieldGuard] = field(default_factory=lambda: MappingProxyType({}))
    tags: Mapping[str, Tag] = field(default_factory=lambda: MappingProxyType({}))
    consent: str | None = None
    subject: str | None = None
    collected: str | None = None
    policy_only: frozenset[str] = frozenset()
    storage: Storage = "model"
    vaulted: tuple[str, ...] = ()
    pickle: PickleMode = "refuse"
    members: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: each field's purposeguard markers, its own and those inherited (what a subclass inherits)
    markers: Mapping[str, tuple[Any, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: each guarded field's paths in the class's guarded bases, nearest first
    lineage: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: what the vault holds
    shape: Shape = field(init=False)
    #: the guarded fields sealed one by one, as (name, guard) pairs
    alone: tuple[tuple[str, FieldGuard], ...] = field(init=False)
    #: whether the record states any fact about itself (consent, subject, collection time)
    has_meta: bool = field(init=False)
    #: whether a dump reads the record's fields through its attributes (a dataclass)
    reads_through_attributes: bool = field(init=False)
    #: puts every guarded value of a record into a vault (see :func:`fields_sealer`)
    seal: Callable[..., None] = field(init=False, repr=False)
    #: a model's sealer of the fields pydantic validated, before it makes the record of them
    seal_fields: Callable[[dict[str, Any]], None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = (self.consent, self.subject, self.collected)
        at = {n: i for i, n in enumerate(self.vaulted)}
        consent, subject, collected = (at.get(n, -1) if n else -1 for n in names)
        guards = tuple(self.guards[n] for n in self.vaulted if n in self.guards)
        shape = Shape(self.path, self.vaulted, guards, self.pickle, (consent, subject, collected))
        shape.register()
        set_ = object.__setattr__
        set_(self, "shape", shape)
        set_(self, "alone", tuple((n, g) for n, g in self.guards.items() if n not in self.vaulted))
        set_(self, "has_meta", any(name is not None for name in names))
        set_(self, "reads_through_attributes", self.storage != "model")
        seal_fields = fields_sealer(self)
        set_(self, "seal_fields", seal_fields)
        if self.storage == "model":
            set_(
                self,
                "seal",
                lambda obj, context=None, force=False: seal_fields(obj.__dict__, force),
            )
        else:
            set_(self, "seal", lambda obj, context=None, force=False: _seal_slowly(self, obj))

    def vault_of(self, obj: Any) -> Vault | None:
        """The record's vault, or None (not sealed yet)."""
        try:
            if self.storage == "dict":
                found = getattr(obj, VAULT_ATTRIBUTE)
            elif self.storage == "slot":
                found = self.members[self.vaulted[0]].__get__(obj)
            else:
                found = next(
                    (v for v in map(obj.__dict__.get, self.vaulted) if isinstance(v, Vault)), None
                )
        except (AttributeError, IndexError):
            return None
        return found if isinstance(found, Vault) and found.shape is self.shape else None

    def stored(self, obj: Any, name: str) -> Any:
        """The plain value of field ``name`` of ``obj`` as stored (not checked), or None."""
        index = self.shape.index.get(name)
        if index is not None and self.storage != "model":
            vault = self.vault_of(obj)
            value = vault.values[index] if vault is not None else None
        elif self.storage == "slot":
            try:
                value = self.members[name].__get__(obj)
            except (AttributeError, KeyError):
                value = getattr(obj, name, None)
        elif self.storage == "dict":
            value = getattr(obj, name, None)
        else:
            value = obj.__dict__.get(name)
        return plain_value(value, name)

    def record(self, obj: Any) -> Record | None:
        """The facts ``obj`` states about itself: consent, subject, collection time."""
        if not self.has_meta:
            return None
        consent = self.stored(obj, self.consent) if self.consent else None
        subject = self.stored(obj, self.subject) if self.subject else None
        collected = self.stored(obj, self.collected) if self.collected else None
        return record_of(consent, subject, collected)

    def collection_time(self, obj: Any) -> Any:
        return self.stored(obj, self.collected) if self.collected else None

    def reseals_on(self, name: str) -> bool:
        """Whether assigning field ``name`` changes what the record's seals carry."""
        return name in self.guards or name in (self.consent, self.subject, self.collected)


def plain_value(value: Any, name: str) -> Any:
    """A stored value without its seal (a vault's value for ``name``), not checked."""
    if isinstance(value, Vault):
        index = value.shape.index.get(name)
        value = value.values[index] if index is not None else None
    while isinstance(value, Sealed):
        value = value._v
    return None if value is ABSENT else value


class ClassBinder:
    """Registered with the guards: a policy that tags, by path, a field of this class which
    was defined untagged is refused, since its values were never sealed. (It binds nothing; it
    only vetoes.) The class keeps it alive as ``__purposeguard_binder__``, since the guard
    registry holds guards weakly."""

    __slots__ = ("__weakref__", "fields", "guarded", "path")

    def __init__(self, path: str, fields: Iterable[str], guarded: Iterable[str]) -> None:
        self.path = path
        self.fields = frozenset(fields)
        self.guarded = frozenset(guarded)

    @property
    def name(self) -> str:
        """The class's path, as ``pg.testing.guards()`` lists it."""
        return self.path

    def prepare(self, compiled: CompiledPolicy | None) -> object:
        if compiled is not None:
            for name in sorted(self.fields - self.guarded):
                path = f"{self.path}.{name}"
                if path in compiled.field_tags:
                    raise PolicyError(
                        f"the policy tags field {path}, but its class was defined before the "
                        "policy, untagged, so its values are not sealed",
                        file=compiled.policy.source or "<python>",
                        path=f"fields.{path}",
                        fix="tag the field with pg.CollectedFor(...) (the policy's tags then "
                        "add to it), or configure the policy before the class is defined",
                    )
        return None

    def install(self, prepared: object) -> None:
        return None


def metadata_of(annotation: Any) -> list[Any]:
    """The ``Annotated`` metadata of a type hint ([] for a plain one)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return list(annotation.__metadata__)
    return []


def check_options(cls: type, on_denied: object, pickle: object) -> None:
    if on_denied not in ("raise", "redact", "omit"):
        raise ConfigurationError(
            f"{cls.__qualname__}: on_denied must be 'raise', 'redact' or 'omit', not {on_denied!r}"
        )
    if pickle not in ("refuse", "purpose"):
        raise ConfigurationError(
            f"{cls.__qualname__}: pickle must be 'refuse' or 'purpose', not {pickle!r}"
        )


def refuse_cached_properties(cls: type) -> None:
    """Raise ConfigurationError if ``cls`` (or a base of its own) has a
    ``functools.cached_property``: it would keep a value derived from guarded fields unsealed
    in the record's ``__dict__``, for every later purpose, ``vars()`` and copy to find."""
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in ("builtins", "pydantic", "purposeguard"):
            continue
        for name, attribute in vars(klass).items():
            if isinstance(attribute, functools.cached_property) or isinstance(
                getattr(attribute, "wrapped", None), functools.cached_property
            ):
                raise ConfigurationError(
                    f"{cls.__qualname__}.{name}: a functools.cached_property on a guarded class "
                    "keeps the value it derives unsealed in the record, where every later "
                    "purpose, vars() and copies find it; use a @property (each read checked), "
                    "or cache the function that derives it with @pg.cache"
                )


def collect(
    path: str,
    fields: Iterable[tuple[str, list[Any], Any]],
    on_denied: OnDenied,
    pickle: PickleMode,
    bases: Sequence[Inherited] = (),
) -> Layout:
    """The layout of the class at ``path`` from its ``(name, metadata, default)`` fields and
    the layouts of its guarded ``bases`` (see :mod:`._inherit`): a guard for each field its
    markers, its bases' or the configured policy's paths tag, and the consent, subject and
    collection-time fields. Validates everything, then registers the guards (a bad tag
    registers none); raises ConfigurationError or PolicyError."""
    compiled = state.compiled
    guards: dict[str, FieldGuard] = {}
    tags: dict[str, Tag] = {}
    policy_only: set[str] = set()
    all_markers: dict[str, tuple[Any, ...]] = {}
    lineages: dict[str, tuple[str, ...]] = {}
    consent: str | None = None
    subject: str | None = None
    collected: str | None = None
    for name, own, default in fields:
        metadata, lineage = inherit(path, name, own, bases)
        all_markers[name] = own_markers(metadata)
        markers = [m for m in metadata if isinstance(m, CollectedFor)]
        if any(is_marker(m, SubjectId) for m in metadata):
            if subject is not None:
                raise ConfigurationError(f"{path}: only one field can be the SubjectId")
            subject = name
        if any(is_marker(m, Consent) for m in metadata):
            if consent is not None:
                raise ConfigurationError(f"{path}: only one field can hold Consent")
            if markers:
                raise ConfigurationError(f"{path}.{name}: a Consent field cannot be guarded")
            consent = name
        if any(is_marker(m, CollectedAt) for m in metadata):
            if collected is not None:
                raise ConfigurationError(f"{path}: only one field can be the CollectedAt time")
            if name == consent:
                raise ConfigurationError(f"{path}.{name}: a Consent field cannot be CollectedAt")
            collected = name
        field_path = f"{path}.{name}"
        if not markers and not lineage and not (compiled and field_path in compiled.field_tags):
            continue
        lineages[name] = lineage
        categories = {m.category for m in markers if m.category is not None}
        if len(categories) > 1:
            raise ConfigurationError(f"{field_path}: CollectedFor markers name two categories")
        periods = [m.retention for m in markers if m.retention is not None]
        guards[name] = FieldGuard(
            field_path,
            [m.tag for m in markers],
            category=categories.pop() if categories else None,
            default=default,
            on_denied=on_denied,
            pickle=pickle,
            retention=min(periods) if periods else None,
            lineage=lineage,
        )
        if markers:
            tags[name] = markers[0].tag
        else:
            policy_only.add(name)
    for guard in guards.values():
        guard.timed = collected is not None
        if guard.own_retention is not None and collected is None:
            raise ConfigurationError(
                f"{guard.name}: CollectedFor(retention=...) is counted from the record's "
                "collection time; mark a timezone-aware datetime field with pg.CollectedAt"
            )
    for guard in guards.values():  # validate every field first: a bad tag registers none
        guard.prepare(compiled)
    for guard in guards.values():
        register(guard)
        register_for_unpickling(guard)
    return Layout(
        path,
        MappingProxyType(guards),
        MappingProxyType(tags),
        consent,
        subject,
        collected,
        frozenset(policy_only),
        markers=MappingProxyType(all_markers),
        lineage=MappingProxyType(lineages),
    )


def layout_of(obj: Any) -> Layout:
    layout: Layout = type(obj).__purposeguard_layout__
    return layout


def unrestricted_record(obj: Any, registry: SubjectRestrictions) -> bool:
    """True iff the subject registry has nothing to say about this record: it names no subject,
    or a subject (a str, as the registry keys them) with no restriction. Anything else takes the
    slow path, which applies the registry's rules."""
    layout = layout_of(obj)
    name = layout.subject
    if name is None:
        return True
    subject = layout.stored(obj, name)
    return subject is None or (type(subject) is str and subject not in registry.restricted)


def guarded_read(obj: Any, guard: FieldGuard, value: Any, channel: str) -> Any:
    """The slow path of a read: the field decision for this record (recorded, raised in enforce
    mode), then the value, each seal within it checked too. ``value`` is what the record stores
    for the field: its vault, a value sealed alone, or a plain value."""
    layout = layout_of(obj)
    admit(guard, layout.record(obj), _get(), channel)
    name = guard.name.rpartition(".")[2]
    if isinstance(value, Vault):
        index = value.shape.index.get(name)
        if index is None or value.values[index] is ABSENT:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")
        value = value.values[index]
    if isinstance(value, Sealed):
        if value._f is guard:
            value = value._v
        return open_sealed(value, channel) if isinstance(value, Sealed) else value
    return value


def vault_value(shape: Shape, index: int, value: Any) -> Any:
    """``value`` as a vault of ``shape`` holds it at ``index``: a value sealed for that field
    alone is held plain; a value sealed for another field, or any other record's vault, keeps
    its seal (both must then allow a use)."""
    if isinstance(value, Vault):
        if value.shape is shape:
            return value.values[index]
        value = value.standalone(shape.names[index])
    if isinstance(value, Sealed) and value._f is shape.guards[index]:
        return value._v  # its own seal comes off; a seal within it (another field's) stays
    return value


# --- sealing a record ----------------------------------------------------------------------------
# Compiled per class into straight-line code: it runs once for every record created.

_MODEL_SEALER = """
def seal_fields(stored, force=False):
    try:
        {names}, = get_values(stored)
    except KeyError:  # a field not set (model_construct without it)
        seal_slowly(stored)
    else:
        if {plain}:
{facts}
            vault = new(Vault)  # a pure vault, as Vault() makes one, without its __init__ call
            vault.values = ({names},)
            vault.shape = SHAPE
            vault.subject = subject
            vault.facts = known
            {stores} = vault
{nones}
        elif force or not already_sealed(({names},), SHAPE):
            seal_slowly(stored)
{alone}
"""


def facts_source(layout: Layout, value_of: Callable[[str], str]) -> str:
    """Python source for the facts a record of ``layout`` states, as a vault holds them
    (``consent, subject, collected_at``); ``value_of(name)`` is the source of a field's stored
    value. A subject alone, the common case, is inlined."""
    names = (layout.consent, layout.subject, layout.collected)
    if not layout.has_meta:
        return "((), None, None)"
    sources = ["None" if n is None else f"plain({value_of(n)}, {n!r})" for n in names]
    if layout.consent is None and layout.collected is None:
        subject = value_of(layout.subject)  # type: ignore[arg-type]
        return f"((), ({subject} if type({subject}) not in IMPURE else {sources[1]}), None)"
    return f"facts({', '.join(sources)})"


class _Fields:
    """A model's fields before pydantic has made the record of them, as the slow sealer reads
    a record (``obj.__dict__``)."""

    __slots__ = ("__dict__",)

    def __init__(self, stored: dict[str, Any]) -> None:
        self.__dict__ = stored


def fields_sealer(layout: Layout) -> Callable[..., None]:
    """The function that seals the fields of a model record of ``layout``'s class (its
    ``__dict__``, or what pydantic validated for it): its vaulted values go into one vault
    (values already sealed are taken out of their seals first), its other guarded values are
    sealed one by one, all with the record's current facts. ``force`` seals again even when the
    record already holds its vault (a fact of it changed)."""
    namespace: dict[str, Any] = {
        "__name__": __name__,
        "IMPURE": IMPURE,
        "Vault": Vault,
        "Sealed": Sealed,
        "ABSENT": ABSENT,
        "SHAPE": layout.shape,
        "KEYS": layout.vaulted,
        "seal": seal,
        "seal_slowly": lambda stored: _seal_slowly(layout, _Fields(stored)),
        "already_sealed": already_sealed,
        "record_of": lambda stored: layout.record(_Fields(stored)),
        "facts": facts,
        "plain": plain_value,
    }
    if layout.storage != "model" or (not layout.vaulted and not layout.alone):
        return lambda stored, force=False: None
    if layout.vaulted:
        namespace["get_values"] = _values_getter(layout.vaulted)
    namespace["new"] = object.__new__
    namespace["NO_FACTS"] = NO_FACTS
    indent = " " * 12
    if layout.consent is None and layout.collected is None:
        fact_expr = f"{indent}known = NO_FACTS\n{indent}subject = None"
        if layout.subject is not None:
            name = layout.subject
            fact_expr = (
                f"{indent}known = NO_FACTS\n{indent}subject = stored.get({name!r})\n"
                f"{indent}if type(subject) in IMPURE:\n{indent}    subject = plain(subject, {name!r})"
            )
    else:
        fact_expr = (
            f"{indent}consent, subject, collected = "
            f"{facts_source(layout, lambda n: f'stored.get({n!r})')}\n"
            f"{indent}known = (consent, collected) if consent or collected is not None else NO_FACTS"
        )
    names = ", ".join(f"v{i}" for i in range(len(layout.vaulted)))
    plain = " and ".join(f"type(v{i}) not in IMPURE" for i in range(len(layout.vaulted)))
    stores = " = ".join(f"stored[{n!r}]" for n in layout.vaulted)
    nones = "\n".join(  # None stays None (pydantic's exclude_none must see it)
        f"            if v{i} is None:\n                stored[{n!r}] = None"
        for i, n in enumerate(layout.vaulted)
    )
    alone = ""
    if layout.alone:
        lines = ["    record = record_of(stored)"]
        for i, (name, guard) in enumerate(layout.alone):
            namespace[f"g{i}"] = guard
            lines.append(
                f"    value = stored.get({name!r})\n"
                "    if value is not None:\n"
                f"        stored[{name!r}] = seal(g{i}, value, record)"
            )
        alone = "\n".join(lines)
    if layout.vaulted:
        source = _MODEL_SEALER.format(
            names=names, plain=plain, facts=fact_expr, stores=stores, nones=nones, alone=alone
        )
    else:
        source = "def seal_fields(stored, force=False):\n" + alone + "\n"
    exec(compile(source, __file__, "exec"), namespace)  # a fixed template
    seal_fields: Callable[..., None] = namespace["seal_fields"]
    return seal_fields


def _values_getter(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """``operator.itemgetter`` of ``names``, giving a tuple for one name too."""
    if len(names) == 1:
        only = names[0]
        return lambda stored: (stored[only],)
    return operator.itemgetter(*names)


def _seal_slowly(layout: Layout, obj: Any) -> None:
    """The general sealer: any mix of plain values, values sealed alone, this record's vault,
    another record's, and fields not held."""
    shape = layout.shape
    if layout.storage == "model":
        stored = obj.__dict__
        raw = [stored.get(n, ABSENT) for n in layout.vaulted]
    else:
        old = layout.vault_of(obj)
        raw = list(old.values) if old is not None else [ABSENT] * len(layout.vaulted)
    values = tuple(vault_value(shape, i, v) for i, v in enumerate(raw))
    record = layout.record(obj)
    if layout.storage == "model":
        consent, subject, collected = facts(*(_fact(layout, obj, n) for n in _meta(layout)))
        vault = Vault(values, shape, consent, subject, collected)
        for name, value in zip(layout.vaulted, values, strict=True):
            if value is ABSENT:
                continue
            stored[name] = None if value is None else vault
        for name, guard in layout.alone:
            value = stored.get(name)
            if value is not None:
                stored[name] = seal(guard, value, record)
    elif layout.vaulted:
        store_vault(layout, obj, Vault.holding(values, shape))


def _meta(layout: Layout) -> tuple[str | None, str | None, str | None]:
    return (layout.consent, layout.subject, layout.collected)


def _fact(layout: Layout, obj: Any, name: str | None) -> Any:
    return layout.stored(obj, name) if name is not None else None


def store_vault(layout: Layout, obj: Any, vault: Vault) -> None:
    """Put ``vault`` where a dataclass record of ``layout`` keeps it (a frozen one too)."""
    if layout.storage == "slot":
        layout.members[layout.vaulted[0]].__set__(obj, vault)
    else:
        object.__setattr__(obj, VAULT_ATTRIBUTE, vault)


# --- the allow fast path of a read ---------------------------------------------------------------
# Written once per storage and compiled into the descriptors' ``__get__``: a ContextVar read, a
# frozenset membership test, the record's own pure vault, a subject without restrictions.

_MODEL_GET = """
def __get__(self, obj, owner=None):
    try:
        value = obj.__dict__[self.name]
    except (AttributeError, KeyError):
        return self._absent(obj)
    guard = self.guard
    if _get() in guard.allowed:
        if type(value) is Vault:  # a pure vault
            if value.shape is self.shape:
                subject = value.subject
                registry = state.registry
                if {free}:
                    return value.values[self.index]
        elif value is None:
            return None
        elif type(value) is Sealed and value._f is guard:
            registry = state.registry
            if registry is None or not registry.restricted or unrestricted_record(obj, registry):
                return value._v
    elif guard.binding.retention_us is not None and within_retention(
        guard, value, _get(), self.index
    ):
        return value.values[self.index] if type(value) is Vault else value._v
    return self._slow(obj, value)
"""

_DATACLASS_GET = """
def __get__(self, obj, owner=None):
    try:
        vault = {load}
    except (AttributeError, TypeError):
        return self._absent(obj)
    guard = self.guard
    if _get() in guard.allowed:
        if type(vault) is Vault and vault.shape is self.shape:  # a pure vault
            subject = vault.subject
            registry = state.registry
            if {free}:
                return vault.values[self.index]
    elif guard.binding.retention_us is not None and within_retention(
        guard, vault, _get(), self.index
    ):
        return vault.values[self.index]
    return self._slow(obj, vault)
"""

# the record's subject, if any, has no restriction (registry and subject are locals)
_FREE = (
    "(registry is None or subject is None or not registry.restricted"
    " or (type(subject) is str and subject not in registry.restricted))"
)
_TEMPLATES = {
    "model": _MODEL_GET.format(free=_FREE),
    "dict": _DATACLASS_GET.format(load=f"obj.{VAULT_ATTRIBUTE}", free=_FREE),
    "slot": _DATACLASS_GET.format(load="self.store.__get__(obj)", free=_FREE),
}


def descriptor_get(storage: Storage) -> Callable[..., Any]:
    """The ``__get__`` of a guarded field of a record that keeps its vault in ``storage``."""
    namespace = {
        "__name__": __name__,  # the frame is purposeguard's: never a violation's ``code``
        "_get": _get,
        "state": state,
        "Sealed": Sealed,
        "Vault": Vault,
        "unrestricted_record": unrestricted_record,
        "within_retention": within_retention,
    }
    exec(compile(_TEMPLATES[storage], __file__, "exec"), namespace)  # a fixed template
    get: Callable[..., Any] = namespace["__get__"]  # type: ignore[assignment]
    return get
