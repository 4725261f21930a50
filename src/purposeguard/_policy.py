"""Strict loading and validation of policy files into an immutable :class:`Policy`.

The loader never guesses: duplicate keys, unknown keys, YAML 1.1's implicit booleans and dates,
anchors and aliases, explicit tags, deep nesting and oversized files are each a
:class:`~purposeguard.PolicyError` naming the file, the key path and the fix. A policy is either
valid as a whole or not produced at all.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
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
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "Category",
    "FieldTag",
    "Mode",
    "Policy",
    "Purpose",
    "Recipient",
    "RecipientKind",
    "Retention",
    "load_policy",
    "parse_duration",
]

Mode = Literal["enforce", "monitor"]

#: Policy files larger than this are refused; pass ``max_bytes=`` to :func:`load_policy` to change it.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Nesting deeper than this is refused: no valid policy comes close.
MAX_DEPTH = 16

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


def load_policy(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Policy:
    """Load and validate a policy from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.

    Raises :class:`PolicyError` naming the file, the key path and the fix; never returns a
    partial policy.
    """
    file = Path(path)
    name = str(file)
    suffix = file.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise PolicyError(
            f"unsupported policy file type {suffix or '(none)'!r}",
            file=name,
            fix="use a .yaml, .yml, .toml or .json file",
        )
    try:
        with file.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise PolicyError(
            f"cannot read the file: {exc.strerror}", file=name, fix="check the path"
        ) from None
    if len(data) > max_bytes:
        raise PolicyError(
            f"file is larger than {max_bytes} bytes",
            file=name,
            fix="split or shrink it, or pass a larger max_bytes to load_policy",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"not UTF-8 at byte {exc.start}", file=name, fix="save the file as UTF-8"
        ) from None
    if suffix == ".json":
        raw = _parse_json(text, name)
    elif suffix == ".toml":
        raw = _parse_toml(text, name)
    else:
        raw = _parse_yaml(text, name)
    _check_depth(raw, name)
    if not isinstance(raw, dict):
        raise PolicyError(
            "the top level must be a mapping", file=name, fix="start with 'policy: <id>'"
        )
    token = _loading.set(name)
    try:
        policy = Policy(**raw)
    finally:
        _loading.reset(token)
    policy._source = name
    return policy


def _check_depth(value: Any, file: str, depth: int = 0, path: str = "") -> None:
    if depth > MAX_DEPTH:
        raise PolicyError(
            f"nested deeper than {MAX_DEPTH} levels",
            file=file,
            path=path or "<root>",
            fix="flatten it",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_depth(item, file, depth + 1, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_depth(item, file, depth + 1, f"{path}[{i}]")


# --- JSON and TOML -------------------------------------------------------------------------------


def _parse_json(text: str, file: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise PolicyError(f"duplicate key {key!r}", file=file, fix="keep one of them")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise PolicyError(
            f"{name} is not allowed", file=file, fix="write a finite number or a string"
        )

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            file=file,
            fix="fix the syntax",
        ) from None
    except RecursionError:
        raise PolicyError(
            f"nested deeper than {MAX_DEPTH} levels", file=file, fix="flatten it"
        ) from None


def _parse_toml(text: str, file: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(
            f"invalid TOML: {exc}", file=file, fix="fix the syntax; keys may appear once"
        ) from None


# --- YAML ----------------------------------------------------------------------------------------
# Built from the event stream rather than PyYAML's constructors, so that every scalar is resolved
# by rules we choose: YAML 1.2's core schema, with YAML 1.1's surprises refused instead of guessed.

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_YAML11_BOOL = {
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "y",
    "Y",
    "n",
    "N",
}
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?\Z|[-+]?[0-9]+[eE][-+]?[0-9]+\Z"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?\Z")
_YAML11_NUMBER = re.compile(
    r"[-+]?(?:0[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"
    r"|[0-9][0-9_]*_[0-9_]*(?:\.[0-9_]*)?|\.(?:inf|Inf|INF|nan|NaN|NAN))\Z"
)


def _parse_yaml(text: str, file: str) -> Any:
    stack: list[tuple[Any, str]] = []  # (container, key path)
    pending: list[str | None] = []  # the key waiting for its value, per open mapping
    result: Any = None
    documents = 0

    def fail(message: str, event: Any, fix: str, path: str = "") -> PolicyError:
        line = f" (line {event.start_mark.line + 1})" if event.start_mark else ""
        return PolicyError(message + line, file=file, path=path, fix=fix)

    def current_path() -> str:
        if not stack:
            return ""
        container, path = stack[-1]
        if isinstance(container, dict):
            key = pending[-1]
            return f"{path}.{key}" if path and key is not None else (key or path)
        return f"{path}[{len(container)}]"

    def add(value: Any, event: Any) -> None:
        nonlocal result
        if not stack:
            result = value
            return
        container, path = stack[-1]
        if isinstance(container, list):
            container.append(value)
        elif pending[-1] is None:
            if not isinstance(value, str):
                raise fail("mapping keys must be strings", event, "quote the key", path)
            if value in container:
                raise fail(f"duplicate key {value!r}", event, "keep one of them", path)
            pending[-1] = value
        else:
            container[pending[-1]] = value
            pending[-1] = None

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise fail(
                    "anchors and aliases are not allowed",
                    event,
                    "write the value out",
                    current_path(),
                )
            tag = getattr(event, "tag", None)
            if tag not in (None, "!"):
                raise fail(
                    f"explicit tag {tag!r} is not allowed", event, "remove the tag", current_path()
                )
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise fail("more than one YAML document", event, "keep a single document")
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise fail(
                        f"nested deeper than {MAX_DEPTH} levels",
                        event,
                        "flatten it",
                        current_path(),
                    )
                path = current_path()
                stack.append(({} if isinstance(event, yaml.MappingStartEvent) else [], path))
                pending.append(None)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                container, _ = stack.pop()
                pending.pop()
                add(container, event)
            elif isinstance(event, yaml.ScalarEvent):
                add(_resolve_scalar(event, fail, current_path()), event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise PolicyError(
            f"invalid YAML{where}: {exc.problem}", file=file, fix="fix the syntax"
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"invalid YAML: {exc}", file=file, fix="fix the syntax") from None
    return result


def _resolve_scalar(event: Any, fail: Any, path: str) -> Any:
    value: str = event.value
    if event.style is not None:  # quoted or block scalar: always a string
        return value
    if value in _NULL:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if value in _YAML11_BOOL:
        raise fail(
            f"{value!r} is a boolean in YAML 1.1 and a string in YAML 1.2",
            event,
            "quote it, or write true/false",
            path,
        )
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    if _DATE.match(value):
        raise fail(f"{value!r} is read as a date by YAML parsers", event, "quote it", path)
    if _YAML11_NUMBER.match(value):
        raise fail(f"{value!r} is read as a number by YAML 1.1 parsers", event, "quote it", path)
    return value
