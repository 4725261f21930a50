"""Guarded data: pydantic models whose values no channel leaks outside their purposes.

Tag a field with ``Annotated[T, pg.CollectedFor(...)]`` in a :class:`GuardedModel` (or a
``@pg.guarded`` dataclass, :mod:`purposeguard._dataclasses`). Reading it checks the active
purpose; its value is kept sealed (:mod:`purposeguard._sealed`) so that dumps, ``vars()``,
``repr``, ``==``, ``hash``, copies and pickling cannot reach it around the check. See
docs/models.md.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import BaseModel, GetCoreSchemaHandler, ValidationError
from pydantic_core import PydanticSerializationError, PydanticUndefined, core_schema

from ._compile import Tag
from ._dataclasses import guarded
from ._fields import MISSING, FieldGuard, OnDenied, PickleMode, field_guard
from ._guard import raised
from ._inherit import guarded_bases
from ._layout import (
    ClassBinder,
    Layout,
    check_options,
    collect,
    descriptor_get,
    guarded_read,
    refuse_cached_properties,
)
from ._markers import CollectedAt, CollectedFor, Consent, PolicySealed, Redactable, SubjectId
from ._sealed import field_excluder
from ._state import register
from ._withheld import withheld
from .exceptions import ConfigurationError, PurposeViolation, SealedPickleError

__all__ = [
    "CollectedAt",
    "CollectedFor",
    "Consent",
    "GuardedModel",
    "OnDenied",
    "PickleMode",
    "SealedPickleError",
    "SubjectId",
    "Tag",
    "guarded",
    "purposes_of",
]


class _ModelField:
    """The descriptor that replaces a guarded pydantic field on its class. Its ``__get__`` is
    the allow fast path of :mod:`purposeguard._layout`, reading the model's ``__dict__``, where
    the field's key holds the record's vault (``index`` is the field's place in it, -1 for a
    field sealed alone)."""

    __slots__ = ("guard", "index", "name", "shape")

    def __init__(self, name: str, guard: FieldGuard, layout: Layout) -> None:
        self.name = name
        self.guard = guard
        self.shape = layout.shape
        self.index = layout.shape.index.get(name, -1)

    __get__ = descriptor_get("model")

    def _absent(self, obj: Any) -> Any:
        if obj is None:
            raise AttributeError(self.name)  # pydantic must not see a class-level default
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}")

    def _slow(self, obj: Any, value: Any) -> Any:
        return guarded_read(obj, self.guard, value, "attribute")

    def __set__(self, obj: Any, value: Any) -> None:  # object.__setattr__ lands here
        obj.__dict__[self.name] = value
        _seal_model(obj, force=True)


def _seal_model(obj: Any, force: bool = False) -> None:
    """Seal every guarded value of ``obj`` with its record's facts (``force``: again, even if
    it holds its vault already)."""
    type(obj).__purposeguard_layout__.seal(obj, None, force)


def _model_schema(schema: Any, cls: type) -> Any:
    """The ``model`` schema of ``cls`` in ``schema`` (which may hold it among definitions)."""
    while schema.get("type") == "definitions":
        schema = schema["schema"]
    if schema.get("type") == "model" and schema.get("cls") is cls:
        return schema
    return None


def _wrapped(schema: Any) -> bool:
    function = schema.get("function", {}).get("function") if schema.get("type") else None
    return bool(getattr(function, "__purposeguard_fields__", False))


def _fields_validator(cls: type[GuardedModel]) -> Any:
    def validate_fields(data: Any, handler: Any) -> Any:
        try:
            fields = handler(data)
        except ValidationError as exc:
            error = withheld(exc, cls.__purposeguard_sensitive__)
        else:
            cls.__purposeguard_layout__.seal_fields(fields[0])
            return fields
        raise error  # outside the except block: the original error is nobody's __context__

    validate_fields.__purposeguard_fields__ = True  # type: ignore[attr-defined]
    return validate_fields


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
    __purposeguard_layout__: ClassVar[Layout] = Layout("")

    @classmethod
    def __pydantic_on_complete__(cls) -> None:
        # Called once the fields are fully known: at class creation, or, when an annotation was a
        # forward reference that could not be resolved yet, at the rebuild that resolves it. The
        # markers are only visible then; instrumenting earlier would guard nothing.
        super().__pydantic_on_complete__()
        if "__purposeguard_base__" not in cls.__dict__:  # GuardedModel itself has no fields
            _instrument_model(cls)

    #: keys whose input a validation error withholds (guarded fields, fields holding guarded
    #: records, and their aliases)
    __purposeguard_sensitive__: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        # pydantic's schema for the class, its fields' validation wrapped once: wherever the
        # class is validated (itself, a parent, a TypeAdapter, FastAPI), its errors withhold
        # guarded input and the validated fields are sealed before the record is made of them.
        # A record passed through as it is never reaches the fields' validation.
        schema = handler(source)
        model = _model_schema(schema, cls)
        if model is not None and not _wrapped(model["schema"]):
            model["schema"] = core_schema.no_info_wrap_validator_function(
                _fields_validator(cls), model["schema"]
            )
        return schema

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
        # a JSON text that does not parse fails before any validator runs, quoting the text
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            error = withheld(exc, cls.__purposeguard_sensitive__)
        raise error

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Any:
        record = super().model_construct(_fields_set, **values)
        _seal_model(record)
        return record

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if type(self).__purposeguard_layout__.reseals_on(name):
            _seal_model(self, force=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # pydantic's, but a computed field is never computed: it may read guarded fields, and a
        # repr is redacted under every purpose (logs outlive purposes), and never raises
        fields = type(self).__pydantic_fields__
        for name, value in self.__dict__.items():
            field = fields.get(name)
            if field is not None and field.repr:
                yield name, (value if value is not self else self.__repr_recursion__(value))
        yield from _extra_of(self).items()
        for name, info in type(self).__pydantic_computed_fields__.items():
            if info.repr:
                yield name, DERIVED

    def __iter__(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        guards = type(self).__purposeguard_layout__.guards
        for name, value in super().__iter__():
            guard = guards.get(name)
            yield name, (value if guard is None else guarded_read(self, guard, value, "iter"))

    if not TYPE_CHECKING:
        # Defined for the interpreter only, so that type checkers and IDEs keep pydantic's own
        # signatures and docstrings. BaseModel's dump methods only forward their keywords to
        # the serializer; calling it directly keeps a guarded dump as cheap as a plain one.

        def model_dump(self, **kwargs):
            kept = [None]
            token = raised.set(kept)
            try:
                return self.__pydantic_serializer__.to_python(self, **kwargs)
            except PydanticSerializationError as exc:
                raise violation_of(exc, kept) from None
            finally:
                raised.reset(token)

        def model_dump_json(self, **kwargs):
            kept = [None]
            token = raised.set(kept)
            try:
                return self.__pydantic_serializer__.to_json(self, **kwargs).decode()
            except PydanticSerializationError as exc:
                raise violation_of(exc, kept) from None
            finally:
                raised.reset(token)

        def model_copy(self, *, update=None, deep=False):
            copied = super().model_copy(update=update, deep=deep)
            if update:
                _seal_model(copied, force=True)
            return copied

        model_dump.__doc__ = BaseModel.model_dump.__doc__
        model_dump_json.__doc__ = BaseModel.model_dump_json.__doc__
        model_copy.__doc__ = BaseModel.model_copy.__doc__


class _Derived:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<guarded>"


#: what a guarded model's repr shows for a computed field
DERIVED: Final = _Derived()


def _extra_of(record: Any) -> dict[str, Any]:
    try:
        extra = object.__getattribute__(record, "__pydantic_extra__")
    except AttributeError:  # a record whose validation failed half-way
        return {}
    return extra or {}


def violation_of(
    exc: PydanticSerializationError, kept: list[PurposeViolation | None]
) -> BaseException:
    """pydantic wraps what a serializer raises; a violation is raised as itself (its own
    ``__cause__``, or the one ``kept`` while the serializer ran: see ``_guard.raised``)."""
    stashed = kept[0]
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
    return MISSING if default is PydanticUndefined else default


def _instrument_model(cls: type[GuardedModel]) -> None:
    check_options(cls, cls.purposeguard_on_denied, cls.purposeguard_pickle)
    if cls.model_config.get("revalidate_instances", "never") != "never":
        raise ConfigurationError(
            f"{cls.__qualname__}: revalidate_instances would validate a record's sealed values "
            "again, handing them to validators without a purpose check; a guarded model keeps "
            "revalidate_instances='never' (validate the input when the record is made)"
        )
    origin = cls.__pydantic_generic_metadata__["origin"] or cls
    path = f"{origin.__module__}.{origin.__qualname__}"
    infos = cls.__pydantic_fields__
    layout = collect(
        path,
        ((name, list(info.metadata), _field_default(info)) for name, info in infos.items()),
        cls.purposeguard_on_denied,
        cls.purposeguard_pickle,
        guarded_bases(cls),
    )
    vaulted = tuple(n for n, g in layout.guards.items() if g.default is MISSING)
    layout = replace(layout, vaulted=vaulted, pickle=cls.purposeguard_pickle)
    rebuild = False
    for name, markers in layout.markers.items():
        # a field re-declared by a subclass gets its bases' markers back (their schema hooks
        # seal it and check its dumps)
        missing = [m for m in markers if all(m is not k for k in infos[name].metadata)]
        if missing:
            infos[name].metadata.extend(missing)
            rebuild = True
    for name in layout.policy_only:
        if not any(isinstance(m, PolicySealed) for m in infos[name].metadata):
            infos[name].metadata.append(PolicySealed())
            rebuild = True
    if cls.purposeguard_on_denied == "omit":
        for name in layout.guards:
            infos[name].exclude_if = field_excluder(name)
            rebuild = True
    elif cls.purposeguard_on_denied == "redact":
        for name in layout.guards:
            if not any(isinstance(m, Redactable) for m in infos[name].metadata):
                infos[name].metadata.append(Redactable())
                rebuild = True
    if rebuild:
        cls.model_rebuild(force=True)
    refuse_cached_properties(cls)
    _refuse_replaced_serializers(cls, layout)
    for name, guard in layout.guards.items():
        type.__setattr__(cls, name, _ModelField(name, guard, layout))
    type.__setattr__(cls, "__purposeguard_sensitive__", _sensitive(infos, layout))
    binder = ClassBinder(path, infos, layout.guards)
    register(binder)
    type.__setattr__(cls, "__purposeguard_fields__", layout.tags)
    type.__setattr__(cls, "__purposeguard_layout__", layout)
    type.__setattr__(cls, "__purposeguard_binder__", binder)


def _refuse_replaced_serializers(cls: type[GuardedModel], layout: Layout) -> None:
    """Raise ConfigurationError if a serializer of the application's (``@field_serializer``, or
    a ``PlainSerializer``/``WrapSerializer`` after ``CollectedFor``) has replaced the checked
    serializer of a guarded field: it would get the sealed value, and the dump no check."""
    fields = _fields_schema(cls.__pydantic_core_schema__, cls)
    if fields is None:
        return
    for name in layout.guards:
        schema = fields["fields"][name]["schema"]
        while "serialization" not in schema and "schema" in schema:
            schema = schema["schema"]  # through default, nullable and other wrappers
        function = schema.get("serialization", {}).get("function")
        if function is not None and not getattr(function, "__purposeguard_dump__", False):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name}: a serializer of its own ({function.__qualname__}) "
                "replaces the guarded field's checked serializer, so a dump would skip the "
                "purpose check; put PlainSerializer/WrapSerializer before pg.CollectedFor in "
                "Annotated[...] (it then serializes the checked value), or write a "
                "model_serializer (its reads of guarded fields are checked)"
            )


def _fields_schema(schema: Any, cls: type) -> Any:
    """The ``model-fields`` schema of ``cls`` in its core schema."""
    model = _model_schema(schema, cls)
    inner = model["schema"] if model is not None else None
    while inner is not None and inner.get("type") != "model-fields":
        inner = inner.get("schema")
    return inner


def _sensitive(infos: Mapping[str, Any], layout: Layout) -> frozenset[str]:
    """The keys whose input a validation error of the class withholds: its guarded fields, its
    fields whose type holds a guarded record, and their aliases."""
    keys: set[str] = set()
    for name, info in infos.items():
        if name in layout.guards or _holds_guarded(info.annotation):
            keys.add(name)
            keys.update(a for a in (info.alias, info.validation_alias) if isinstance(a, str))
            choices = getattr(info.validation_alias, "choices", ())  # AliasChoices
            keys.update(c for c in choices if isinstance(c, str))
    return frozenset(keys)


def _holds_guarded(annotation: Any, depth: int = 0) -> bool:
    if depth > 8 or annotation is None:
        return False
    layout = getattr(annotation, "__purposeguard_layout__", None)
    if isinstance(annotation, type) and layout is not None:
        return bool(layout.guards)
    return any(_holds_guarded(arg, depth + 1) for arg in typing.get_args(annotation))


def purposes_of(cls: type, name: str) -> frozenset[str]:
    """Every declared purpose under which field ``name`` of ``cls`` may be used now (its tags,
    the policy's tags, strict category and compatibility applied; consent not included). A
    field with a retention period may be used for them until it ends (``pg.retention_for``)."""
    guard = field_guard(cls, name)
    if guard is None:
        raise ConfigurationError(f"{getattr(cls, '__qualname__', cls)}.{name} is not guarded")
    return guard.usable
