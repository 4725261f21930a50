"""What purposeguard knows about one guarded class, and the field descriptor both front ends
(pydantic models and dataclasses) install.

:func:`collect` reads a class's field markers once, when the class is created, into a frozen
:class:`Layout`; :func:`descriptor_get` compiles the descriptors' ``__get__``, the allow fast
path, from one template for the two ways a record stores a value (its ``__dict__``, or a slot). The fast path is derived from the field decision (:mod:`purposeguard._fields`): a purpose
in ``guard.allowed``, a record whose subject has no restriction, the record's own seal. Anything
else takes the slow path, which asks the field decision itself.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._compile import CompiledPolicy, Tag
from ._context import _current
from ._fields import FieldGuard, OnDenied, PickleMode, Record, admit, record_of
from ._markers import CollectedAt, CollectedFor, Consent, SubjectId, is_marker
from ._sealed import Sealed, open_sealed, register_for_unpickling, seal, within_retention
from ._state import SubjectRestrictions, register, state
from .exceptions import ConfigurationError, PolicyError

__all__ = [
    "ClassBinder",
    "Layout",
    "check_options",
    "collect",
    "descriptor_get",
    "guarded_read",
    "metadata_of",
]

_get = _current.get


@dataclass(frozen=True, slots=True)
class Layout:
    """What purposeguard knows about one class, computed once when the class is created.

    ``guards`` maps each guarded field to its guard; ``tags`` the fields tagged by the class
    itself to their first tag; ``consent``, ``subject`` and ``collected`` name the record's
    meta fields; ``policy_only`` the fields only the policy's ``fields:`` tags; ``members`` the
    slot member descriptors of a ``slots=True`` dataclass's guarded and meta fields.
    """

    path: str
    guards: Mapping[str, FieldGuard] = field(default_factory=lambda: MappingProxyType({}))
    tags: Mapping[str, Tag] = field(default_factory=lambda: MappingProxyType({}))
    consent: str | None = None
    subject: str | None = None
    collected: str | None = None
    policy_only: frozenset[str] = frozenset()
    members: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: ``guards`` as pairs, for the loops that seal a record
    sealing: tuple[tuple[str, FieldGuard], ...] = field(init=False)
    #: whether the record states any fact about itself (consent, subject, collection time)
    has_meta: bool = field(init=False)
    #: seals every guarded value of a record with its current facts (see :func:`sealer`)
    seal: Callable[[Any], None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sealing", tuple(self.guards.items()))
        meta = (self.consent, self.subject, self.collected)
        object.__setattr__(self, "has_meta", any(name is not None for name in meta))
        object.__setattr__(self, "seal", sealer(self))

    def with_members(self, members: Mapping[str, Any]) -> Layout:
        return Layout(
            self.path, self.guards, self.tags, self.consent, self.subject, self.collected,
            self.policy_only, MappingProxyType(dict(members)),
        )  # fmt: skip

    def stored(self, obj: Any, name: str) -> Any:
        """What ``obj`` stores for field ``name`` (a seal, for a guarded field), or None."""
        member = self.members.get(name)
        if member is not None:
            try:
                return member.__get__(obj, type(obj))
            except AttributeError:
                return None
        return obj.__dict__.get(name)

    def _unsealed(self, obj: Any, name: str | None) -> Any:
        value = self.stored(obj, name) if name else None
        while isinstance(value, Sealed):
            value = value._v
        return value

    def record(self, obj: Any) -> Record | None:
        """The facts ``obj`` states about itself: consent, subject, collection time."""
        if not self.has_meta:
            return None
        if self.members:
            return record_of(
                self._unsealed(obj, self.consent),
                self._unsealed(obj, self.subject),
                self._unsealed(obj, self.collected),
            )
        stored = obj.__dict__  # the common case, inline: every record seals with its facts
        consent = stored.get(self.consent) if self.consent else None
        subject = stored.get(self.subject) if self.subject else None
        collected = stored.get(self.collected) if self.collected else None
        if (
            isinstance(subject, Sealed)
            or isinstance(consent, Sealed)
            or isinstance(collected, Sealed)
        ):
            return record_of(*(_unseal(v) for v in (consent, subject, collected)))
        return record_of(consent, subject, collected)

    def collection_time(self, obj: Any) -> Any:
        return self._unsealed(obj, self.collected)

    def reseals_on(self, name: str) -> bool:
        """Whether assigning field ``name`` changes what the record's seals carry."""
        return name in self.guards or name in (self.consent, self.subject, self.collected)


def _unseal(value: Any) -> Any:
    while isinstance(value, Sealed):
        value = value._v
    return value


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


def collect(
    path: str,
    fields: Iterable[tuple[str, list[Any], Any]],
    on_denied: OnDenied,
    pickle: PickleMode,
) -> Layout:
    """The layout of the class at ``path`` from its ``(name, metadata, default)`` fields: a
    guard for each field its markers or the configured policy's paths tag, and the consent,
    subject and collection-time fields. Validates everything, then registers the guards (a bad
    tag registers none); raises ConfigurationError or PolicyError."""
    compiled = state.compiled
    guards: dict[str, FieldGuard] = {}
    tags: dict[str, Tag] = {}
    policy_only: set[str] = set()
    consent: str | None = None
    subject: str | None = None
    collected: str | None = None
    for name, metadata, default in fields:
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
        if not markers and not (compiled is not None and field_path in compiled.field_tags):
            continue
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
    try:
        subject = obj.__dict__[name]  # pydantic models and plain dataclasses keep it here
    except (AttributeError, KeyError):
        subject = layout.stored(obj, name)
    return type(subject) is str and subject not in registry.restricted


def guarded_read(obj: Any, guard: FieldGuard, value: Any, channel: str) -> Any:
    """The slow path of a read: the field decision for this record (recorded, raised in enforce
    mode), then the value, each seal within it checked too."""
    admit(guard, layout_of(obj).record(obj), _get(), channel)
    if isinstance(value, Sealed):
        if value._f is guard:
            value = value._v
        return open_sealed(value, channel) if isinstance(value, Sealed) else value
    return value


# Sealing a whole record (after validation, after __init__, when a fact of the record changes),
# compiled per class into straight-line code: it runs once for every record created.
_SEAL_FIELD = {
    "dict": """
    value = stored.get({name!r})
    if value is not None:
        if not isinstance(value, Sealed):
            stored[{name!r}] = Sealed(value, g{i}, record)
        elif value._f is not g{i} or value._r != record:
            stored[{name!r}] = seal(g{i}, value, record)""",
    "slot": """
    try:
        value = m{i}.__get__(obj)
    except AttributeError:
        value = None
    if value is not None:
        if not isinstance(value, Sealed):
            m{i}.__set__(obj, Sealed(value, g{i}, record))
        elif value._f is not g{i} or value._r != record:
            m{i}.__set__(obj, seal(g{i}, value, record))""",
}


def sealer(layout: Layout) -> Callable[[Any], None]:
    """A function that seals every guarded value of a record of ``layout``'s class with the
    record's current facts (values already sealed so stay as they are)."""
    storage = "slot" if layout.members else "dict"
    namespace: dict[str, Any] = {
        "__name__": __name__,
        "Sealed": Sealed,
        "seal": seal,
        "record_of_obj": layout.record,
    }
    lines = ["def seal_record(obj):"]
    if storage == "dict":
        lines.append("    stored = obj.__dict__")
    only_subject = layout.consent is None and layout.collected is None
    if storage == "dict" and layout.subject is not None and only_subject:
        # the common case, inline: a record that states its subject and nothing else
        namespace.update(new_record=tuple.__new__, Record=Record, unseal=_unseal)
        lines += [
            f"    subject = stored.get({layout.subject!r})",
            "    if isinstance(subject, Sealed):",
            "        subject = unseal(subject)",
            "    record = None if subject is None else new_record(Record, ((), subject, None))",
        ]
    elif layout.has_meta:
        lines.append("    record = record_of_obj(obj)")
    else:
        lines.append("    record = None")
    for i, (name, guard) in enumerate(layout.sealing):
        namespace[f"g{i}"] = guard
        namespace[f"m{i}"] = layout.members.get(name)
        lines.append(_SEAL_FIELD[storage].format(name=name, i=i))
    if not layout.sealing:
        lines.append("    return None")
    exec(compile("\n".join(lines), __file__, "exec"), namespace)
    seal_record: Callable[[Any], None] = namespace["seal_record"]
    return seal_record


# The allow fast path of a guarded field, written once and compiled for each way a record
# stores a value: a ContextVar read, a frozenset membership test, the record's own seal.
_GET_TEMPLATE = """
def __get__(self, obj, owner=None):
    try:
        value = {load}
    except (AttributeError, KeyError, TypeError):
        return self._absent(obj)
    guard = self.guard
    if _get() in guard.allowed:
        registry = state.registry
        if registry is None or not registry.restricted or unrestricted_record(obj, registry):
            if type(value) is Sealed:
                if value._f is guard:
                    return value._v
            elif value is None:
                return None
    elif guard.binding.retention_us is not None and within_retention(guard, value, _get()):
        return value._v  # the seal carries the record's collection time, kept current
    return self._slow(obj, value)
"""

_LOADS = {"dict": "obj.__dict__[self.name]", "slot": "self.member.__get__(obj)"}


def descriptor_get(storage: str) -> Callable[..., Any]:
    """The ``__get__`` of a guarded field stored in ``storage`` (``dict`` or ``slot``)."""
    namespace = {
        "__name__": __name__,  # the frame is purposeguard's: never a violation's ``code``
        "_get": _get,
        "state": state,
        "Sealed": Sealed,
        "unrestricted_record": unrestricted_record,
        "within_retention": within_retention,
    }
    source = _GET_TEMPLATE.format(load=_LOADS[storage])
    exec(compile(source, __file__, "exec"), namespace)
    get: Callable[..., Any] = namespace["__get__"]  # type: ignore[assignment]
    return get
