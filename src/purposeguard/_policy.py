"""The policy schema: an immutable, validated :class:`Policy` (files are read by ``_load``).

The loader never guesses: duplicate keys, unknown keys, YAML 1.1's implicit booleans and dates,
anchors and aliases, explicit tags, deep nesting and oversized files are each a
:class:`~purposeguard.PolicyError` naming the file, the key path and the fix. A policy is either
valid as a whole or not produced at all.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    model_validator,
)

from ._ids import describe_bad_id, is_purpose_id, parent
from .exceptions import PolicyError

__all__ = [
    "Category",
    "FieldTag",
    "Mode",
    "Policy",
    "Purpose",
    "Recipient",
    "RecipientKind",
    "Retention",
    "parse_duration",
]

Mode = Literal["enforce", "monitor"]


_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){2,}\Z")


# The file being loaded, so that errors raised while validating name it.
_loading: contextvars.ContextVar[str] = contextvars.ContextVar("_loading", default="<python>")


class _SemanticError(Exception):
    """Raised inside validators; deliberately not a ValueError so pydantic lets it through."""

    def __init__(self, path: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.path, self.message, self.fix = path, message, fix


_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdwy])\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(value: object) -> timedelta:
    """``"30d"``, ``"12h"``, ``"3y"`` (a year is 365 days) → timedelta; a timedelta passes."""
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError("a duration must be positive")
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            "a duration is a positive whole number and a unit s, m, h, d, w or y, such as '3y'"
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

#: third_party: provision needs consent or a legal ground. contractor: entrustment of our own
#: work (outsourcing), not provision. successor: business succession. joint_use: joint use
#: announced under the law. The last three are recorded as what they are, not as provision.
RecipientKind = Literal["third_party", "contractor", "successor", "joint_use"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Purpose(_Frozen):
    """One purpose of use: what it is for, an optional mode override and compatible purposes."""

    description: StrictStr
    mode: Mode | None = None
    compatible_with: tuple[StrictStr, ...] = ()


class FieldTag(_Frozen):
    """Purposes for a field of a class you cannot edit, keyed by its dotted path in the policy."""

    collected_for: tuple[StrictStr, ...]
    prohibited: tuple[StrictStr, ...] = ()
    mode: Mode | None = None
    category: StrictStr | None = None
    retention: Duration | None = None


class Category(_Frozen):
    """A category of data. A ``strict`` category (My Number) may be used only for its closed
    ``purposes`` list, which per-record consent can never widen."""

    description: StrictStr
    strict: StrictBool = False
    purposes: tuple[StrictStr, ...] = ()
    retention: Duration | None = None


class Recipient(_Frozen):
    """Someone outside the processing code that data may be given to."""

    description: StrictStr
    kind: RecipientKind
    #: what the recipient does with the data (for a contractor, the entrusted work's purposes)
    purposes: tuple[StrictStr, ...] = ()
    #: strict categories this recipient may receive (only where the law enumerates it)
    categories: tuple[StrictStr, ...] = ()


class Retention(_Frozen):
    """How long purposeguard keeps its own records."""

    provision_records: Duration = timedelta(days=3 * 365)


class Policy(_Frozen):
    """A validated policy. Build it from a file with :func:`load_policy` or directly in Python.

    ``id`` is written ``policy:`` in files. Construction raises :class:`PolicyError` on any
    problem, exactly as loading a file does.
    """

    id: StrictStr = Field(min_length=1, max_length=128)
    version: StrictStr = Field(min_length=1, max_length=128)
    mode: Mode = "enforce"
    purposes: dict[StrictStr, Purpose]
    fields: dict[StrictStr, FieldTag] = Field(default_factory=dict)
    categories: dict[StrictStr, Category] = Field(default_factory=dict)
    recipients: dict[StrictStr, Recipient] = Field(default_factory=dict)
    retention: Retention = Field(default_factory=Retention)

    _source: str | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        file = _loading.get()
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _from_validation(exc, file) from None
        except _SemanticError as exc:
            raise PolicyError(exc.message, file=file, path=exc.path, fix=exc.fix) from None

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _rename_policy_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "policy" in data and "id" not in data:
            data = dict(data)
            data["id"] = data.pop("policy")
        return data

    @model_validator(mode="after")
    def _check_semantics(self) -> Policy:
        for pid, spec in self.purposes.items():
            where = f"purposes.{pid}"
            if not is_purpose_id(pid):
                raise _SemanticError(where, describe_bad_id(pid), "rename the purpose")
            up = parent(pid)
            if up is not None and up not in self.purposes:
                raise _SemanticError(
                    where,
                    f"parent purpose {up!r} is not declared",
                    f"declare {up!r} under purposes",
                )
            for i, other in enumerate(spec.compatible_with):
                self._known(other, f"{where}.compatible_with[{i}]")
                if other == pid:
                    raise _SemanticError(
                        f"{where}.compatible_with[{i}]",
                        "a purpose cannot be compatible with itself",
                        "remove it",
                    )
        for path, tag in self.fields.items():
            where = f"fields.{path}"
            if not _FIELD_PATH.match(path):
                raise _SemanticError(
                    where,
                    "a field path must be module.Class.field, as in 'hr.models.Applicant.email'",
                    "write the dotted path of the class attribute",
                )
            if not tag.collected_for:
                raise _SemanticError(
                    f"{where}.collected_for", "a field needs at least one purpose", "name one"
                )
            for key, ids in (("collected_for", tag.collected_for), ("prohibited", tag.prohibited)):
                for i, pid in enumerate(ids):
                    self._known(pid, f"{where}.{key}[{i}]")
            if tag.category is not None:
                self._category(tag.category, f"{where}.category")
        for name, category in self.categories.items():
            where = f"categories.{name}"
            self._name(name, where)
            if category.strict and not category.purposes:
                raise _SemanticError(
                    f"{where}.purposes",
                    "a strict category needs its closed list of purposes",
                    "list the purposes it may be used for",
                )
            for i, pid in enumerate(category.purposes):
                self._known(pid, f"{where}.purposes[{i}]")
        for name, recipient in self.recipients.items():
            where = f"recipients.{name}"
            self._name(name, where)
            for i, pid in enumerate(recipient.purposes):
                self._known(pid, f"{where}.purposes[{i}]")
            for i, cat in enumerate(recipient.categories):
                self._category(cat, f"{where}.categories[{i}]")
        return self

    def _name(self, name: str, where: str) -> None:
        if not is_purpose_id(name) or "." in name:
            raise _SemanticError(
                where, "a name is one lowercase segment [a-z][a-z0-9_]*", "rename it"
            )

    def _category(self, name: str, where: str) -> None:
        if name not in self.categories:
            raise _SemanticError(
                where, f"category {name!r} is not declared", f"declare {name!r} under categories"
            )

    def _known(self, pid: str, where: str) -> None:
        if not is_purpose_id(pid):
            raise _SemanticError(where, describe_bad_id(pid), "use a declared purpose id")
        if pid not in self.purposes:
            raise _SemanticError(
                where, f"purpose {pid!r} is not declared", f"declare {pid!r} under purposes"
            )


_FIXES = {
    "extra_forbidden": "remove the key or check its spelling",
    "missing": "add the key",
    "string_type": "write a string; quote the value",
    "literal_error": "use one of the listed values",
    "dict_type": "write a mapping",
    "tuple_type": "write a list",
    "model_type": "write a mapping",
    "string_too_short": "write a non-empty string",
    "string_too_long": "shorten the value",
    "bool_type": "write true or false",
    "value_error": "see the message",
}


def _from_validation(exc: ValidationError, file: str) -> PolicyError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = [
        "policy" if (i == 0 and part == "id") else str(part) for i, part in enumerate(err["loc"])
    ]
    path = ".".join(loc) or "<root>"
    message = {"extra_forbidden": "unknown key", "missing": "missing required key"}.get(
        err["type"], err["msg"]
    )
    more = (
        f"; {exc.error_count() - 1} more error(s) after fixing this"
        if exc.error_count() > 1
        else ""
    )
    return PolicyError(message + more, file=file, path=path, fix=_FIXES.get(err["type"], ""))
