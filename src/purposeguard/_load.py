"""Strict loading of policy files: YAML, TOML and JSON into a :class:`Policy`.

The loader never guesses: duplicate keys, unknown keys, YAML 1.1's implicit booleans and dates,
anchors and aliases, explicit tags, deep nesting and oversized files are each a
:class:`~purposeguard.PolicyError` naming the file, the key path and the fix. A policy is either
valid as a whole or not produced at all.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ._policy import Policy, _loading
from .exceptions import PolicyError

__all__ = ["DEFAULT_MAX_BYTES", "MAX_DEPTH", "load_policy"]

#: Policy files larger than this are refused; pass ``max_bytes=`` to :func:`load_policy` to change it.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Nesting deeper than this is refused: no valid policy comes close.
MAX_DEPTH = 16


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
