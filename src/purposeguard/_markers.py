"""The markers a class puts on its fields: ``CollectedFor``, ``SubjectId``, ``Consent`` and
``CollectedAt``, and the pydantic schema hooks that seal and unseal a guarded field's value."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from ._compile import Tag
from ._ids import describe_bad_id, is_name, is_purpose_id
from ._policy import Mode
from ._sealed import dump_sealed, field_dumper
from ._time import parse_duration
from .exceptions import ConfigurationError

__all__ = [
    "CollectedAt",
    "CollectedFor",
    "Consent",
    "PolicySealed",
    "Redactable",
    "SubjectId",
    "is_marker",
]


class CollectedFor:
    """The purposes a field's data was collected for: ``Annotated[str, CollectedFor("a", "b")]``.

    ``prohibited`` purposes (with their ancestors and descendants) are never allowed; ``mode``
    overrides enforce/monitor for this field; ``category`` puts the field in a policy category
    (a strict category, such as My Number, may be used only for its closed purpose list, which
    per-record consent never widens); ``retention`` (``"30d"``, ``"3y"`` or a timedelta) is how
    long the data may be used, counted from the record's :data:`CollectedAt` time (the shortest
    of it, the policy's field entry and the category's applies). In a subclass, a field's tags
    are inherited and its own narrow them; ``widen=True`` replaces the inherited tags instead
    (docs/models.md, "Subclasses"). Raises ConfigurationError here
    if a purpose id or the retention is malformed; purposes the policy does not declare are a
    PolicyError when the class is defined or the policy configured.
    """

    __slots__ = ("category", "retention", "tag", "widen")

    def __init__(
        self,
        *collected_for: str,
        prohibited: Iterable[str] = (),
        mode: Mode | None = None,
        category: str | None = None,
        retention: str | timedelta | None = None,
        widen: bool = False,
    ) -> None:
        if not collected_for:
            raise ConfigurationError("CollectedFor needs at least one purpose")
        for pid in (*collected_for, *prohibited):
            if not is_purpose_id(pid):
                raise ConfigurationError(f"CollectedFor: {describe_bad_id(pid)}")
        if mode not in (None, "enforce", "monitor"):
            raise ConfigurationError(f"CollectedFor: mode must be enforce or monitor, not {mode!r}")
        if category is not None and not is_name(category):
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
        self.widen = bool(widen)

    def __repr__(self) -> str:
        extra = f", prohibited={self.tag.prohibited!r}" if self.tag.prohibited else ""
        extra += f", category={self.category!r}" if self.category else ""
        extra += f", retention={self.retention!r}" if self.retention is not None else ""
        extra += ", widen=True" if self.widen else ""
        return f"CollectedFor{self.tag.collected_for!r}{extra}"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _sealing_schema(handler(source), handler.field_name)


def _sealing_schema(inner: core_schema.CoreSchema, name: str | None) -> core_schema.CoreSchema:
    """``inner`` with a serializer that opens a sealed value only after the purpose check; the
    opened value is then serialized by ``inner`` itself (its own serializer included). In a
    field, the serializer gets the record too, and knows the field by ``name``."""
    if name is None:
        serializer = core_schema.plain_serializer_function_ser_schema(
            dump_sealed, return_schema=inner
        )
    else:
        serializer = core_schema.plain_serializer_function_ser_schema(
            field_dumper(name), is_field_serializer=True, return_schema=inner
        )
    return {**inner, "serialization": serializer}


class Redactable:
    """Added to the guarded fields of a model that redacts: a dump may write ``None``."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        ser: Any = schema.get("serialization")
        function = ser.get("function") if ser is not None else None
        if function is not dump_sealed and not hasattr(function, "__purposeguard_dump__"):
            return schema  # not a guarded field
        nullable = core_schema.nullable_schema(ser["return_schema"])
        return {**schema, "serialization": {**ser, "return_schema": nullable}}


class PolicySealed:
    """Added to a field the policy file tags, which has no CollectedFor of its own."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _sealing_schema(handler(source), handler.field_name)


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


def is_marker(metadata: object, marker: _Marker) -> bool:
    """Whether ``metadata`` (one item of an ``Annotated``) is ``marker``, written as the marker
    or as its class (``pg.SubjectId`` or ``type(pg.SubjectId)``)."""
    return metadata is marker or metadata is type(marker)
