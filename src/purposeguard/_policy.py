"""The policy schema: an immutable, validated :class:`Policy` (files are read by ``_load``)."""

from __future__ import annotations

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
from ._time import parse_duration
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


class _SemanticError(Exception):
    """Raised inside validators; deliberately not a ValueError so pydantic lets it through."""

    def __init__(self, path: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.path, self.message, self.fix = path, message, fix


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

    # Not a field, so that no file can claim a source; set only by from_file_data. Pydantic keeps
    # it through model_copy and compares it in ==.
    _source: str | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _from_validation(exc) from None
        except _SemanticError as exc:
            raise PolicyError(exc.message, path=exc.path, fix=exc.fix) from None

    @classmethod
    def from_file_data(cls, data: Mapping[str, Any], *, source: str) -> Policy:
        """The policy that ``data``, the parsed content of the file ``source``, describes.

        The policy remembers ``source`` as :attr:`source`; a :class:`PolicyError` names it as
        the file. :func:`load_policy` reads files through this; use it for a policy kept
        elsewhere (a database, a configuration service), with ``source`` saying where.
        """
        try:
            policy = cls(**data)
        except PolicyError as exc:
            raise exc.with_file(source) from None
        policy._source = source
        return policy

    @property
    def source(self) -> str | None:
        """Where this policy was read from (see :meth:`from_file_data`); None if built in
        Python."""
        return self._source

    @model_validator(mode="before")
    @classmethod
    def _rename_policy_key(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "policy" in data and "id" not in data:
            data = dict(data)
            data["id"] = data.pop("policy")
        return data

    # Key paths are formatted only for an error: a policy may hold 100,000 fields.
    @model_validator(mode="after")
    def _check_semantics(self) -> Policy:
        purposes = self.purposes
        for pid, spec in purposes.items():
            if not is_purpose_id(pid):
                raise _SemanticError(f"purposes.{pid}", describe_bad_id(pid), "rename the purpose")
            up = parent(pid)
            if up is not None and up not in purposes:
                raise _SemanticError(
                    f"purposes.{pid}",
                    f"parent purpose {up!r} is not declared",
                    f"declare {up!r} under purposes",
                )
            for i, other in enumerate(spec.compatible_with):
                if other not in purposes:
                    raise _undeclared(other, f"purposes.{pid}.compatible_with[{i}]")
                if other == pid:
                    raise _SemanticError(
                        f"purposes.{pid}.compatible_with[{i}]",
                        "a purpose cannot be compatible with itself",
                        "remove it",
                    )
        categories = self.categories
        for path, tag in self.fields.items():
            if not _FIELD_PATH.match(path):
                raise _SemanticError(
                    f"fields.{path}",
                    "a field path must be module.Class.field, as in 'hr.models.Applicant.email'",
                    "write the dotted path of the class attribute",
                )
            if not tag.collected_for:
                raise _SemanticError(
                    f"fields.{path}.collected_for", "a field needs at least one purpose", "name one"
                )
            for i, pid in enumerate(tag.collected_for):
                if pid not in purposes:
                    raise _undeclared(pid, f"fields.{path}.collected_for[{i}]")
            for i, pid in enumerate(tag.prohibited):
                if pid not in purposes:
                    raise _undeclared(pid, f"fields.{path}.prohibited[{i}]")
            if tag.category is not None and tag.category not in categories:
                raise _undeclared_category(tag.category, f"fields.{path}.category")
        for name, category in categories.items():
            where = f"categories.{name}"
            _check_name(name, where)
            if category.strict and not category.purposes:
                raise _SemanticError(
                    f"{where}.purposes",
                    "a strict category needs its closed list of purposes",
                    "list the purposes it may be used for",
                )
            for i, pid in enumerate(category.purposes):
                if pid not in purposes:
                    raise _undeclared(pid, f"{where}.purposes[{i}]")
        for name, recipient in self.recipients.items():
            where = f"recipients.{name}"
            _check_name(name, where)
            for i, pid in enumerate(recipient.purposes):
                if pid not in purposes:
                    raise _undeclared(pid, f"{where}.purposes[{i}]")
            for i, cat in enumerate(recipient.categories):
                if cat not in categories:
                    raise _undeclared_category(cat, f"{where}.categories[{i}]")
        return self


def _undeclared(pid: str, where: str) -> _SemanticError:
    # every declared purpose passed is_purpose_id, so a malformed id is never declared
    if not is_purpose_id(pid):
        return _SemanticError(where, describe_bad_id(pid), "use a declared purpose id")
    return _SemanticError(
        where, f"purpose {pid!r} is not declared", f"declare {pid!r} under purposes"
    )


def _undeclared_category(name: str, where: str) -> _SemanticError:
    return _SemanticError(
        where, f"category {name!r} is not declared", f"declare {name!r} under categories"
    )


def _check_name(name: str, where: str) -> None:
    if not is_purpose_id(name) or "." in name:
        raise _SemanticError(where, "a name is one lowercase segment [a-z][a-z0-9_]*", "rename it")


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


def _from_validation(exc: ValidationError) -> PolicyError:
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
    return PolicyError(message + more, path=path, fix=_FIXES.get(err["type"], ""))
