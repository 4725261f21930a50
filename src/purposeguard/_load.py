"""Strict loading of policy files: YAML, TOML and JSON into a :class:`Policy`.

The loader never guesses: duplicate keys, unknown keys, YAML 1.1's implicit booleans and dates,
anchors and aliases, explicit tags, deep nesting and oversized files are each a
:class:`~purposeguard.PolicyError` naming the file, the key path and the fix. A policy is either
valid as a whole or not produced at all.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ._policy import Policy
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
    with _collector_paused():
        if suffix == ".json":
            raw = _parse_json(text, name)
            _check_depth(raw, name)
        elif suffix == ".toml":
            raw = _parse_toml(text, name)
            _check_depth(raw, name)
        else:
            raw = _YamlReader(text, name).read()  # checks the depth as it reads
        if not isinstance(raw, dict):
            raise PolicyError(
                "the top level must be a mapping", file=name, fix="start with 'policy: <id>'"
            )
        return Policy.from_file_data(raw, source=name)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a policy is built.

    A large policy is millions of small objects that all survive and form no cycles; as they
    pile up the collector traverses them again and again, which took half to two thirds of the
    time to load a 10,000-purpose policy (DESIGN §7). Reference counting frees everything else
    as usual. A collector that is already off (the application's choice, or another load) is
    left alone.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _check_depth(value: Any, file: str, depth: int = 0, path: str = "") -> None:
    """Refuse more than MAX_DEPTH mappings and lists inside each other, as the YAML reader does."""
    if depth >= MAX_DEPTH:
        raise PolicyError(
            f"nested deeper than {MAX_DEPTH} levels", file=file, path=path, fix="flatten it"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                _check_depth(item, file, depth + 1, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                _check_depth(item, file, depth + 1, f"{path}[{i}]")


# --- JSON and TOML -------------------------------------------------------------------------------


def _parse_json(text: str, file: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if len(out) < len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise PolicyError(f"duplicate key {key!r}", file=file, fix="keep one of them")
                seen.add(key)
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

_CONSTANTS: dict[str, bool | None] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}
_NUMBER_START = frozenset("+-.0123456789")  # every number, date and sexagesimal starts so

#: libyaml's C parser when PyYAML was built with it, else PyYAML's own; the same events, except
#: that a plain scalar's style is "" from the first and None from the second.
_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
)


class _YamlReader:
    """Plain data from one file's YAML events, refusing what a policy must not hold.

    Each node is read by one call that knows the node's key path, so errors name it.
    """

    _next: Any  # the parser's get_event

    def __init__(self, text: str, file: str) -> None:
        self._text = text
        self._file = file

    def read(self) -> Any:
        try:
            parser = _Loader(self._text)  # the pure-Python one checks the characters here
            self._next = parser.get_event
            try:
                return self._stream()
            finally:
                parser.dispose()
        except yaml.MarkedYAMLError as exc:
            mark, start = exc.problem_mark, exc.context_mark
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            within = f"; {exc.context} at line {start.line + 1}" if exc.context and start else ""
            raise PolicyError(
                f"invalid YAML{where}: {exc.problem}{within}", file=self._file, fix="fix the syntax"
            ) from None
        except yaml.YAMLError as exc:
            raise PolicyError(
                f"invalid YAML: {exc}", file=self._file, fix="fix the syntax"
            ) from None

    def _stream(self) -> Any:
        self._next()  # StreamStartEvent
        if isinstance(self._next(), yaml.StreamEndEvent):
            return None  # an empty file
        value = self._node(self._next(), "", 0)
        self._next()  # DocumentEndEvent
        event = self._next()
        if isinstance(event, yaml.DocumentStartEvent):
            raise self._fail("more than one YAML document", event, "keep a single document")
        return value

    def _node(self, event: Any, path: str, depth: int) -> Any:
        """The value that starts with ``event``, at ``path``, inside ``depth`` containers."""
        kind = type(event)
        if kind is yaml.AliasEvent or event.anchor is not None:
            raise self._fail(
                "anchors and aliases are not allowed", event, "write the value out", path
            )
        tag = event.tag
        if tag is not None and tag != "!":
            raise self._fail(f"explicit tag {tag!r} is not allowed", event, "remove the tag", path)
        if kind is yaml.ScalarEvent:
            return self._scalar(event, path)
        if depth >= MAX_DEPTH:
            raise self._fail(f"nested deeper than {MAX_DEPTH} levels", event, "flatten it", path)
        if kind is yaml.SequenceStartEvent:
            return self._sequence(path, depth + 1)
        return self._mapping(path, depth + 1)

    def _mapping(self, path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        next_event, node = self._next, self._node
        while type(event := next_event()) is not yaml.MappingEndEvent:
            key = node(event, path, depth)  # an error in a key names the mapping
            if type(key) is not str:
                raise self._fail("mapping keys must be strings", event, "quote the key", path)
            if key in out:
                raise self._fail(f"duplicate key {key!r}", event, "keep one of them", path)
            out[key] = node(next_event(), f"{path}.{key}" if path else key, depth)
        return out

    def _sequence(self, path: str, depth: int) -> list[Any]:
        out: list[Any] = []
        next_event, node = self._next, self._node
        while type(event := next_event()) is not yaml.SequenceEndEvent:
            out.append(node(event, f"{path}[{len(out)}]", depth))
        return out

    def _scalar(self, event: Any, path: str) -> Any:
        """A quoted or block scalar is a string; a plain one is read by YAML 1.2's core schema,
        and is an error where YAML 1.1 would read it otherwise (other tools may)."""
        value: str = event.value
        if event.style:  # "" or None for a plain scalar, depending on the parser
            return value
        if value in _CONSTANTS:
            return _CONSTANTS[value]
        if value in _YAML11_BOOL:
            raise self._fail(
                f"{value!r} is a boolean in YAML 1.1 and a string in YAML 1.2",
                event,
                "quote it, or write true/false",
                path,
            )
        if value[0] not in _NUMBER_START:
            return value
        if _INT.match(value):
            return int(value)
        if _FLOAT.match(value):
            return float(value)
        if _DATE.match(value):
            raise self._fail(
                f"{value!r} is read as a date by YAML parsers", event, "quote it", path
            )
        if _YAML11_NUMBER.match(value):
            raise self._fail(
                f"{value!r} is read as a number by YAML 1.1 parsers", event, "quote it", path
            )
        return value

    def _fail(self, message: str, event: Any, fix: str, path: str = "") -> PolicyError:
        line = f" (line {event.start_mark.line + 1})" if event.start_mark else ""
        return PolicyError(message + line, file=self._file, path=path, fix=fix)
