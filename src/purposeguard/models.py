"""Guarded data: pydantic models and dataclasses whose values no channel leaks outside their
purposes.

Tag a field with ``Annotated[T, pg.CollectedFor(...)]`` in a :class:`GuardedModel` or a
``@pg.guarded`` dataclass. Reading it checks the active purpose; its value is kept sealed
(:mod:`purposeguard._sealed`) so that dumps, ``vars()``, ``repr``, ``==``, ``hash``, copies and
pickling cannot reach it around the check. See docs/models.md.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import typing
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeVar, overload

from pydantic import BaseModel, GetCoreSchemaHandler, model_validator
from pydantic_core import PydanticCustomError, PydanticSerializationError, core_schema

from . import _config
from ._compile import CompiledPolicy, Tag
from ._context import _current
from ._ids import describe_bad_id, is_purpose_id
from ._policy import Mode, parse_duration
from ._sealed import (
    MISSING,
    FieldGuard,
    Meta,
    OnDenied,
    PickleMode,
    Sealed,
    SealedPickleError,
    admit,
    caller,
    channel_of,
    dump_sealed,
    exclude_sealed,
    make_meta,
    open_sealed,
    pending,
    seal,
    within_retention,
)
from .exceptions import ConfigurationError, PolicyError, PurposeViolation

__all__ = [
    "CollectedAt",
    "CollectedFor",
    "Consent",
    "GuardedModel",
    "OnDenied",
    "PickleMode",
    "SealedPickleError",
    "SubjectId",
    "guarded",
    "purposes_of",
]

T = TypeVar("T")
_get = _current.get
_state = _config.state


# --- markers -------------------------------------------------------------------------------------


class CollectedFor:
    """The purposes a field's data was collected for: ``Annotated[str, CollectedFor("a", "b")]``.

    ``prohibited`` purposes (with their ancestors and descendants) are never allowed; ``mode``
    overrides enforce/monitor for this field; ``category`` puts the field in a policy category
    (a strict category, such as My Number, may be used only for its closed purpose list, which
    per-record consent never widens); ``retention`` (``"30d"``, ``"3y"`` or a timedelta) is how
    long the data may be used, counted from the record's :data:`CollectedAt` time (the shortest
    of it, the policy's field entry and the category's applies). Raises ConfigurationError here
    if a purpose id or the retention is malformed; purposes the policy does not declare are a
    PolicyError when the class is defined or the policy configured.
    """

    __slots__ = ("category", "retention", "tag")

    def __init__(
        self,
        *collected_for: str,
        prohibited: Iterable[str] = (),
        mode: Mode | None = None,
        category: str | None = None,
        retention: str | timedelta | None = None,
    ) -> None:
        if not collected_for:
            raise ConfigurationError("CollectedFor needs at least one purpose")
        for pid in (*collected_for, *prohibited):
            if not is_purpose_id(pid):
                raise ConfigurationError(f"CollectedFor: {describe_bad_id(pid)}")
        if mode not in (None, "enforce", "monitor"):
            raise ConfigurationError(f"CollectedFor: mode must be enforce or monitor, not {mode!r}")
        if category is not None and not (is_purpose_id(category) and "." not in category):
            raise ConfigurationError(
                f"CollectedFor: category {category!r} is not a category name; use one lowercase "
                "segment, as declared under categories: in the policy"
            )
        period: timedelta | None = None
        if retention is not None:
            try:
                period = parse_duration(retention)
            except ValueError as exc:
                raise ConfigurationError(f"CollectedFor: retention {retention!r}: {exc}") from None
        self.tag = Tag.of(collected_for, tuple(prohibited), mode)
        self.category = category
        self.retention = period

    def __repr__(self) -> str:
        extra = f", prohibited={self.tag.prohibited!r}" if self.tag.prohibited else ""
        extra += f", category={self.category!r}" if self.category else ""
        extra += f", retention={self.retention!r}" if self.retention is not None else ""
        return f"CollectedFor{self.tag.collected_for!r}{extra}"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _sealing_schema(handler(source))


def _sealing_schema(inner: core_schema.CoreSchema) -> core_schema.CoreSchema:
    """``inner`` with a serializer that opens a sealed value only after the purpose check; the
    opened value is then serialized by ``inner`` itself (its own serializer included)."""
    return {
        **inner,
        "serialization": core_schema.plain_serializer_function_ser_schema(
            dump_sealed, return_schema=inner
        ),
    }


class _Redactable:
    """Added to the guarded fields of a model that redacts: a dump may write ``None``."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        ser: Any = schema.get("serialization")
        if ser is None or ser.get("function") is not dump_sealed:
            return schema
        nullable = core_schema.nullable_schema(ser["return_schema"])
        return {**schema, "serialization": {**ser, "return_schema": nullable}}


class _PolicySealed:
    """Added to a field the policy file tags, which has no CollectedFor of its own."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _sealing_schema(handler(source))


class _Marker:
    __slots__ = ()
    _name = ""

    def __repr__(self) -> str:
        return f"pg.{self._name}"


class _SubjectIdMarker(_Marker):
    """Marks the field holding the record's subject id: violation events carry its keyed hash
    (HMAC with ``configure(subject_key=...)``), never the id."""

    __slots__ = ()
    _name = "SubjectId"


def _check_consent(value: Any) -> Any:
    if isinstance(value, str):
        raise PydanticCustomError(
            "purposeguard_consent", "consent is a collection of purpose ids, not one string"
        )
    for pid in value:
        if not is_purpose_id(pid):
            raise PydanticCustomError(
                "purposeguard_consent", "consent holds something that is not a purpose id"
            )
    return value


class _ConsentMarker(_Marker):
    """Marks the field holding the purposes the record's subject consented to (a collection of
    purpose ids). Consent widens what the record's guarded fields may be used for, except fields
    in a strict category."""

    __slots__ = ()
    _name = "Consent"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_consent, handler(source))


def _check_collected_at(value: Any) -> Any:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise PydanticCustomError(
            "purposeguard_collected_at",
            "the collection time must be a timezone-aware datetime, such as datetime.now(UTC): "
            "a naive datetime names no instant to count a retention period from",
        )
    return value


class _CollectedAtMarker(_Marker):
    """Marks the field holding the record's collection time (a timezone-aware datetime): the
    retention periods of its guarded fields are counted from it."""

    __slots__ = ()
    _name = "CollectedAt"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_collected_at, handler(source))


#: ``Annotated[str, pg.SubjectId]``: the record's subject id (hashed in events, never shown).
SubjectId: Final = _SubjectIdMarker()
#: ``Annotated[frozenset[str], pg.Consent]``: purposes the record's subject consented to.
Consent: Final = _ConsentMarker()
#: ``Annotated[datetime, pg.CollectedAt]``: when the record was collected (timezone-aware).
CollectedAt: Final = _CollectedAtMarker()


# --- the per-class layout ------------------------------------------------------------------------


class _Layout:
    """What purposeguard knows about one class, computed once when the class is created."""

    __slots__ = ("collected", "consent", "guards", "members", "path", "subject")

    def __init__(
        self,
        path: str,
        guards: dict[str, FieldGuard],
        consent: str | None,
        subject: str | None,
        members: Mapping[str, Any] | None = None,
        collected: str | None = None,
    ) -> None:
        self.path = path
        self.guards = guards
        self.consent = consent
        self.subject = subject
        self.collected = collected
        self.members = members or {}  # slot member descriptors of a slots=True dataclass

    def stored(self, obj: Any, name: str) -> Any:
        member = self.members.get(name)
        if member is not None:
            try:
                return member.__get__(obj, type(obj))
            except AttributeError:
                return None
        return obj.__dict__.get(name)

    def meta(self, obj: Any) -> Meta | None:
        if self.consent is None and self.subject is None and self.collected is None:
            return None
        consent = self.stored(obj, self.consent) if self.consent else None
        subject = self.stored(obj, self.subject) if self.subject else None
        collected = self.stored(obj, self.collected) if self.collected else None
        while isinstance(consent, Sealed):
            consent = consent._v
        while isinstance(subject, Sealed):
            subject = subject._v
        while isinstance(collected, Sealed):
            collected = collected._v
        return make_meta(consent, subject, collected)

    def reseals_on(self, name: str) -> bool:
        """Whether assigning field ``name`` changes what the record's seals carry."""
        return (
            name in self.guards
            or name == self.consent
            or name == self.subject
            or name == self.collected
        )


class _ClassBinder:
    """Registered with the configuration: a policy that tags, by path, a field of this class
    which was defined untagged is refused, since its values were never sealed."""

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


def _split(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        return list(annotation.__metadata__)
    return []


def _collect(
    path: str,
    fields: Iterable[tuple[str, list[Any], Any]],
    on_denied: OnDenied,
    pickle: PickleMode,
) -> tuple[dict[str, FieldGuard], dict[str, Tag], str | None, str | None, set[str], str | None]:
    """Guards for the tagged fields (class markers and the configured policy's paths), the
    consent, subject and collection-time fields, and the fields only the policy tags."""
    compiled = _state.compiled
    guards: dict[str, FieldGuard] = {}
    class_tags: dict[str, Tag] = {}
    policy_only: set[str] = set()
    consent: str | None = None
    subject: str | None = None
    collected: str | None = None
    for name, metadata, default in fields:
        markers = [m for m in metadata if isinstance(m, CollectedFor)]
        if any(m is SubjectId or m is _SubjectIdMarker for m in metadata):
            if subject is not None:
                raise ConfigurationError(f"{path}: only one field can be the SubjectId")
            subject = name
        if any(m is Consent or m is _ConsentMarker for m in metadata):
            if consent is not None:
                raise ConfigurationError(f"{path}: only one field can hold Consent")
            if markers:
                raise ConfigurationError(f"{path}.{name}: a Consent field cannot be guarded")
            consent = name
        if any(m is CollectedAt or m is _CollectedAtMarker for m in metadata):
            if collected is not None:
                raise ConfigurationError(f"{path}: only one field can be the CollectedAt time")
            if name == consent:
                raise ConfigurationError(f"{path}.{name}: a Consent field cannot be CollectedAt")
            collected = name
        field_path = f"{path}.{name}"
        from_policy = compiled is not None and field_path in compiled.field_tags
        if not markers and not from_policy:
            continue
        categories = {m.category for m in markers if m.category is not None}
        if len(categories) > 1:
            raise ConfigurationError(f"{field_path}: CollectedFor markers name two categories")
        periods = [m.retention for m in markers if m.retention is not None]
        guard = FieldGuard(
            field_path,
            [m.tag for m in markers],
            category=categories.pop() if categories else None,
            default=default,
            on_denied=on_denied,
            pickle=pickle,
            retention=min(periods) if periods else None,
        )
        guards[name] = guard
        if markers:
            class_tags[name] = markers[0].tag
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
        _config.register(guard)
    return guards, class_tags, consent, subject, policy_only, collected


def _options(cls: type, on_denied: Any, pickle: Any) -> None:
    if on_denied not in ("raise", "redact", "omit"):
        raise ConfigurationError(
            f"{cls.__qualname__}: on_denied must be 'raise', 'redact' or 'omit', not {on_denied!r}"
        )
    if pickle not in ("refuse", "purpose"):
        raise ConfigurationError(
            f"{cls.__qualname__}: pickle must be 'refuse' or 'purpose', not {pickle!r}"
        )


# --- pydantic ------------------------------------------------------------------------------------


class _ModelField:
    """The descriptor that replaces a guarded pydantic field on its class: the allow path is a
    ContextVar read and a frozenset membership test."""

    __slots__ = ("guard", "name")

    def __init__(self, name: str, guard: FieldGuard) -> None:
        self.name = name
        self.guard = guard

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        try:
            value = obj.__dict__[self.name]
        except (AttributeError, KeyError):
            return self._missing(obj)
        guard = self.guard
        if _get() in guard.allowed:
            registry = _state.registry
            if registry is None or not registry.restricted or _unrestricted(obj, registry):
                if type(value) is Sealed:
                    if value._f is guard:
                        return value._v
                elif value is None:
                    return None
        elif guard.retention_us is not None and within_retention(guard, value, _get()):
            return value._v  # the seal carries the record's collection time, kept current
        return _read(obj, guard, value, "attribute")

    def _missing(self, obj: Any) -> Any:
        if obj is None:
            raise AttributeError(self.name)  # pydantic must not see a class-level default
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")

    def __set__(self, obj: Any, value: Any) -> None:  # object.__setattr__ lands here
        layout: _Layout = type(obj).__purposeguard_layout__
        obj.__dict__[self.name] = seal(self.guard, value, layout.meta(obj))


def _unrestricted(obj: Any, registry: Any) -> bool:
    """True iff the subject registry has nothing to say about this record: it names no subject,
    or a subject (a str, as the registry keys them) with no restriction. Anything else takes the
    slow path, which applies the registry's rules."""
    layout: _Layout = type(obj).__purposeguard_layout__
    name = layout.subject
    if name is None:
        return True
    try:
        subject = obj.__dict__[name]  # pydantic models and plain dataclasses keep it here
    except (AttributeError, KeyError):
        subject = layout.stored(obj, name)
    return type(subject) is str and subject not in registry.restricted


def _read(obj: Any, guard: FieldGuard, value: Any, channel: str) -> Any:
    layout: _Layout = type(obj).__purposeguard_layout__
    admit(guard, layout.meta(obj), _get(), channel)
    if isinstance(value, Sealed):
        if value._f is guard:
            value = value._v
        return open_sealed(value, channel) if isinstance(value, Sealed) else value
    return value


def _seal_record(obj: Any) -> None:
    layout: _Layout = type(obj).__purposeguard_layout__
    if not layout.guards:
        return
    stored = obj.__dict__
    meta = layout.meta(obj)
    for name, guard in layout.guards.items():
        if name in stored:
            stored[name] = seal(guard, stored[name], meta)


class GuardedModel(BaseModel):
    """A pydantic v2 model whose ``CollectedFor`` fields are guarded and sealed.

    Class options (plain class attributes):

    - ``purposeguard_on_denied``: what a dump does with a field the active purpose may not use,
      in enforce mode: ``"raise"`` (the default: PurposeViolation), ``"redact"`` (``None`` in its
      place) or ``"omit"`` (left out). In monitor mode the value is dumped and the violation
      recorded.
    - ``purposeguard_pickle``: ``"refuse"`` (default) or ``"purpose"`` (pickled under an allowed
      purpose, unpickled sealed).
    """

    __purposeguard_base__: ClassVar[bool] = True
    purposeguard_on_denied: ClassVar[OnDenied] = "raise"
    purposeguard_pickle: ClassVar[PickleMode] = "refuse"
    __purposeguard_fields__: ClassVar[Mapping[str, Tag]] = MappingProxyType({})
    __purposeguard_layout__: ClassVar[_Layout] = _Layout("", {}, None, None)

    @classmethod
    def __pydantic_on_complete__(cls) -> None:
        # Called once the fields are fully known: at class creation, or, when an annotation was a
        # forward reference that could not be resolved yet, at the rebuild that resolves it. The
        # markers are only visible then; instrumenting earlier would guard nothing.
        super().__pydantic_on_complete__()
        if "__purposeguard_base__" not in cls.__dict__:  # GuardedModel itself has no fields
            _instrument_model(cls)

    @model_validator(mode="after")
    def _purposeguard_seal(self) -> GuardedModel:
        _seal_record(self)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if type(self).__purposeguard_layout__.reseals_on(name):
            _seal_record(self)

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        guards = type(self).__purposeguard_layout__.guards
        for name, value in super().__iter__():
            guard = guards.get(name)
            yield name, (value if guard is None else _read(self, guard, value, "iter"))

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Any:
        model = super().model_construct(_fields_set, **values)
        _seal_record(model)
        return model

    # BaseModel's own dump methods only forward their keywords to the serializer; calling it
    # directly keeps a guarded dump as cheap as a plain one, plus the try
    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.__pydantic_serializer__.to_python(self, **kwargs)  # type: ignore[no-any-return]
        except PydanticSerializationError as exc:
            raise violation_of(exc) from None

    def model_dump_json(self, **kwargs: Any) -> str:
        try:
            return self.__pydantic_serializer__.to_json(self, **kwargs).decode()
        except PydanticSerializationError as exc:
            raise violation_of(exc) from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Any:
        copied = super().model_copy(update=update, deep=deep)
        if update:
            _seal_record(copied)
        return copied


def violation_of(exc: PydanticSerializationError) -> BaseException:
    """pydantic wraps what a serializer raises; a violation is raised as itself."""
    stashed, pending.violation = pending.violation, None
    cause = exc.__cause__
    while cause is not None and not isinstance(cause, PurposeViolation):
        cause = cause.__cause__
    if cause is not None:
        return cause
    if stashed is not None and str(stashed) in str(exc):
        return stashed
    return exc


def _field_default(info: Any) -> Any:
    if info.default_factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return MISSING
        try:
            return info.default_factory()
        except Exception:
            return MISSING
    default = info.default
    return MISSING if default is _pydantic_undefined() else default


def _pydantic_undefined() -> Any:
    from pydantic_core import PydanticUndefined

    return PydanticUndefined


def _instrument_model(cls: type[GuardedModel]) -> None:
    _options(cls, cls.purposeguard_on_denied, cls.purposeguard_pickle)
    origin = cls.__pydantic_generic_metadata__["origin"] or cls
    path = f"{origin.__module__}.{origin.__qualname__}"
    infos = cls.__pydantic_fields__
    guards, class_tags, consent, subject, policy_only, collected = _collect(
        path,
        ((name, list(info.metadata), _field_default(info)) for name, info in infos.items()),
        cls.purposeguard_on_denied,
        cls.purposeguard_pickle,
    )
    rebuild = False
    for name in policy_only:
        if not any(isinstance(m, _PolicySealed) for m in infos[name].metadata):
            infos[name].metadata.append(_PolicySealed())
            rebuild = True
    if cls.purposeguard_on_denied == "omit":
        for name in guards:
            infos[name].exclude_if = exclude_sealed
            rebuild = True
    elif cls.purposeguard_on_denied == "redact":
        for name in guards:
            if not any(isinstance(m, _Redactable) for m in infos[name].metadata):
                infos[name].metadata.append(_Redactable())
                rebuild = True
    if rebuild:
        cls.model_rebuild(force=True)
    for name, guard in guards.items():
        type.__setattr__(cls, name, _ModelField(name, guard))
    binder = _ClassBinder(path, infos, guards)
    _config.register(binder)
    type.__setattr__(cls, "__purposeguard_fields__", MappingProxyType(class_tags))
    layout = _Layout(path, guards, consent, subject, None, collected)
    type.__setattr__(cls, "__purposeguard_layout__", layout)
    type.__setattr__(cls, "__purposeguard_binder__", binder)


# --- dataclasses ---------------------------------------------------------------------------------


class _DataclassField:
    """The descriptor that replaces a guarded dataclass field (or its slot) on its class."""

    __slots__ = ("guard", "member", "name")

    def __init__(self, name: str, guard: FieldGuard, member: Any) -> None:
        self.name = name
        self.guard = guard
        self.member = member  # the slot's member descriptor for slots=True, else None

    def _stored(self, obj: Any) -> Any:
        if self.member is not None:
            return self.member.__get__(obj, type(obj))
        try:
            return obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(
                f"{type(obj).__name__!r} object has no attribute {self.name!r}"
            ) from None

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = self._stored(obj)
        guard = self.guard
        if _get() in guard.allowed:
            registry = _state.registry
            if registry is None or not registry.restricted or _unrestricted(obj, registry):
                if type(value) is Sealed:
                    if value._f is guard:
                        return value._v
                elif value is None:
                    return None
        elif guard.retention_us is not None and within_retention(guard, value, _get()):
            return value._v  # the seal carries the record's collection time, kept current
        channel = channel_of(caller(1))
        if channel == "replace" and isinstance(value, Sealed):
            return value  # dataclasses.replace copies: the copy keeps the seal, nothing is read
        layout: _Layout = type(obj).__purposeguard_layout__
        admit(guard, layout.meta(obj), _get(), channel)
        if isinstance(value, Sealed):
            if value._f is guard:
                value = value._v
            return open_sealed(value, channel) if isinstance(value, Sealed) else value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        layout: _Layout = type(obj).__purposeguard_layout__
        sealed = seal(self.guard, value, layout.meta(obj))
        if self.member is not None:
            self.member.__set__(obj, sealed)
        else:
            obj.__dict__[self.name] = sealed

    def __delete__(self, obj: Any) -> None:
        if self.member is not None:
            self.member.__delete__(obj)
        else:
            del obj.__dict__[self.name]


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
        _reseal_dataclass(obj)

    def __delete__(self, obj: Any) -> None:
        if self.member is not None:
            self.member.__delete__(obj)
        else:
            del obj.__dict__[self.name]


def _dataclass_repr(self: Any) -> str:
    layout: _Layout = type(self).__purposeguard_layout__
    parts = []
    for f in dataclasses.fields(self):
        if not f.repr:
            continue
        if f.name in layout.guards:
            parts.append(f"{f.name}=<guarded>")
        else:
            parts.append(f"{f.name}={getattr(self, f.name)!r}")
    return f"{type(self).__qualname__}({', '.join(parts)})"


C = TypeVar("C", bound=type)


@overload
def guarded(cls: C, /) -> C: ...
@overload
def guarded(*, pickle: PickleMode = "refuse") -> typing.Callable[[C], C]: ...


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
        _instrument_dataclass(klass, pickle, localns)
        return klass

    return decorate if cls is None else decorate(cls)


def _instrument_dataclass(cls: type, pickle: PickleMode, localns: dict[str, Any] | None) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigurationError(
            f"@pg.guarded takes a dataclass, not {cls!r}: put it above @dataclass "
            "(for pydantic models, subclass pg.GuardedModel)"
        )
    if "__purposeguard_layout__" in cls.__dict__:
        raise ConfigurationError(f"{cls.__qualname__} is already guarded")
    _options(cls, "raise", pickle)
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
        if f.default is not dataclasses.MISSING:
            return f.default
        return MISSING

    guards, class_tags, consent, subject, _, collected = _collect(
        path,
        ((f.name, _split(hints.get(f.name)), default_of(f)) for f in fields),
        "raise",  # pydantic dumps a dataclass through its attributes: reads
        pickle,
    )
    slotted = "__slots__" in cls.__dict__
    members: dict[str, Any] = {}
    for f in fields:
        if slotted and f.name in (*guards, consent, subject, collected):
            members[f.name] = cls.__dict__[f.name]
    for name, guard in guards.items():
        setattr(cls, name, _DataclassField(name, guard, members.get(name)))
    for meta_name in (consent, subject, collected) if guards else ():
        if meta_name is not None and meta_name not in guards:
            setattr(cls, meta_name, _MetaField(meta_name, members.get(meta_name)))
    layout = _Layout(path, guards, consent, subject, members, collected)
    cls.__purposeguard_layout__ = layout  # type: ignore[attr-defined]
    cls.__purposeguard_fields__ = MappingProxyType(class_tags)  # type: ignore[attr-defined]
    binder = _ClassBinder(path, (f.name for f in fields), guards)
    _config.register(binder)
    cls.__purposeguard_binder__ = binder  # type: ignore[attr-defined]
    if guards and (consent is not None or subject is not None or collected is not None):
        original_init = cls.__init__

        @functools.wraps(original_init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            if collected is not None:
                _check_dataclass_collected_at(self, layout)
            _reseal_dataclass(self)  # the seals carry the record's consent, subject and time

        setattr(cls, "__init__", __init__)  # noqa: B010
    if guards and cls.__dataclass_params__.repr:  # type: ignore[attr-defined]
        setattr(cls, "__repr__", _dataclass_repr)  # noqa: B010
    if slotted and guards:
        names = tuple(f.name for f in fields)
        all_members = {n: cls.__dict__[n] for n in names if n not in guards}
        all_members.update({n: members[n] for n in guards})

        def __getstate__(self: Any) -> list[Any]:  # the seals, not the values
            return [_slot_get(all_members[n], self) for n in names]

        def __setstate__(self: Any, state: list[Any]) -> None:
            for n, value in zip(names, state, strict=True):
                all_members[n].__set__(self, value)

        setattr(cls, "__getstate__", __getstate__)  # noqa: B010
        setattr(cls, "__setstate__", __setstate__)  # noqa: B010


def _check_dataclass_collected_at(obj: Any, layout: _Layout) -> None:
    name = layout.collected
    value = layout.stored(obj, name) if name else None
    while isinstance(value, Sealed):
        value = value._v
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(
            f"{layout.path}.{name} (pg.CollectedAt) must be a timezone-aware datetime, such as "
            "datetime.now(UTC): a naive datetime names no instant to count a retention from"
        )


def _reseal_dataclass(obj: Any) -> None:
    layout: _Layout = type(obj).__purposeguard_layout__
    meta = layout.meta(obj)
    for name, descriptor in ((n, type(obj).__dict__.get(n)) for n in layout.guards):
        if isinstance(descriptor, _DataclassField):
            stored = layout.stored(obj, name)
            if isinstance(stored, Sealed) and stored._r != meta:
                descriptor.__set__(obj, stored)


def _slot_get(member: Any, obj: Any) -> Any:
    try:
        return member.__get__(obj, type(obj))
    except AttributeError:
        return None


# --- introspection -------------------------------------------------------------------------------


def purposes_of(cls: type, name: str) -> frozenset[str]:
    """Every declared purpose under which field ``name`` of ``cls`` may be used now (its tags,
    the policy's tags, strict category and compatibility applied; consent not included). A
    field with a retention period may be used for them until it ends (``pg.retention_for``)."""
    layout: _Layout | None = getattr(cls, "__purposeguard_layout__", None)
    guard = layout.guards.get(name) if layout is not None else None
    if guard is None:
        raise ConfigurationError(f"{getattr(cls, '__qualname__', cls)}.{name} is not guarded")
    return guard.usable
