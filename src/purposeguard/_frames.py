"""Frames: which line of the application made a read, and which channel the read came through.

Both answers come from the stack, and frames are told apart by the name of their module
(``f_globals["__name__"]``), never by the directory of their file: without a virtual environment
``site-packages`` lies inside the standard library's directory, and a file path says nothing about
who wrote the code.

Every frame is one of three kinds, by the longest dotted prefix of its module name that a table
below names (whole package names only: ``fastapi`` is not ``fastapi_users``, ``purposeguard`` is
not ``purposeguard_ext``), else by its top-level package being in ``sys.stdlib_module_names``:

- *library* code runs on the application's behalf, so the walk passes over it: purposeguard and
  what it is built on, the web frameworks that call handlers and serialize what they return, the
  standard library (the methods ``dataclasses`` generates included);
- *runner* code runs the application: servers, in-process test clients, test runners and event
  loops. What lies below a runner started the process; it did not make the read, so the walk
  stops there with no location;
- everything else is the application (``__main__`` and ``purposeguard.cli._demo`` included).

An application package named after a standard-library module (and so shadowing it) counts as the
standard library.
"""

from __future__ import annotations

import dataclasses
import sys
from types import CodeType, FrameType

__all__ = ["APPLICATION", "LIBRARIES", "RUNNERS", "caller", "caller_location", "channel_of"]

#: Packages whose code calls into purposeguard on the application's behalf: a frame in one is
#: never the offender, the application code that called it is.
LIBRARIES: tuple[str, ...] = (
    # purposeguard and what it is built on
    "purposeguard", "wrapt", "pydantic", "pydantic_core", "structlog", "opentelemetry",
    # web frameworks and their thread bridges: they call the handler (or the handler calls their
    # helpers, such as jsonable_encoder or jsonify), and serialize what it returns
    "fastapi", "starlette", "anyio", "flask", "werkzeug", "django", "asgiref",
)  # fmt: skip
#: Packages whose code runs the application rather than being called by it: servers, in-process
#: test clients (httpx's ASGI and WSGI transports are servers for tests; as an HTTP client httpx
#: calls application code only through hooks, which lie above it), test runners, and event loops
#: (a task's stack ends at its first coroutine). A read with no application frame above one of
#: these (a response model serialized after its handler returned) has no location.
RUNNERS: tuple[str, ...] = (
    "uvicorn", "gunicorn", "hypercorn", "daphne", "waitress", "socketserver",
    "httpx", "starlette.testclient", "werkzeug.test", "django.test",
    "pytest", "_pytest", "pluggy", "pytest_asyncio", "hypothesis",
    "asyncio", "trio",
)  # fmt: skip
#: Application code inside a package the tables above name: the demo ships with purposeguard, but
#: it plays the part of a user's code.
APPLICATION: tuple[str, ...] = ("purposeguard.cli._demo",)

_LIBRARY, _APPLICATION, _RUNNER = 0, 1, 2
_KINDS: dict[str, int] = {
    **dict.fromkeys(LIBRARIES, _LIBRARY),
    **dict.fromkeys(RUNNERS, _RUNNER),
    **dict.fromkeys(APPLICATION, _APPLICATION),
}
_STDLIB = sys.stdlib_module_names
_CACHE_LIMIT = 10_000
# Keyed by id(code), not by the code: code objects compare and hash by content (not by file), and
# hashing one costs up to microseconds for a large function. The codes are kept alive in _pinned,
# so no cached id is ever reused by another code object.
_kind_of_code: dict[int, int] = {}
_pinned: list[CodeType] = []


def _kind(frame: FrameType) -> int:
    code = frame.f_code
    if code.co_filename == "<string>" and code.co_qualname.startswith("__create_fn__."):
        return _LIBRARY  # a method dataclasses generated, run with its class's module globals
    name = frame.f_globals.get("__name__")
    if not isinstance(name, str) or not name:
        return _APPLICATION  # code exec'd without a module: nothing says it is not the user's
    while True:
        kind = _KINDS.get(name)
        if kind is not None:
            return kind
        parent, dot, _ = name.rpartition(".")
        if not dot:  # the top-level package, named by no table
            return _LIBRARY if name in _STDLIB else _APPLICATION
        name = parent


#: ``file:line`` texts already made, per (code object, line): a location is formatted once
_located: dict[tuple[int, int], str] = {}


def caller_location(skip: int = 0) -> str | None:
    """``file:line`` of the innermost application frame on the caller's stack, or ``None`` if a
    runner (or the bottom of the stack) comes first: a read made by the framework alone, such as
    a response model FastAPI serializes after the handler returned, names no line, whether the
    app runs under uvicorn or in a test's in-process client.

    Runs on every violation: once a code object has been seen, its frame costs one dict lookup
    (the kind is cached per code object, for up to 10,000 of them; a code object run with another
    module's globals, which only ``exec`` does, keeps the kind it was first seen with).
    ``skip`` frames above the caller's are passed over unread: the caller knows they are
    purposeguard's own (reading a frame's code makes CPython build its frame object).
    """
    try:
        frame: FrameType | None = sys._getframe(1 + skip)
    except ValueError:  # pragma: no cover - fewer frames than skipped
        return None
    cache = _kind_of_code
    while frame is not None:
        code = frame.f_code
        kind = cache.get(id(code))
        if kind is None:
            kind = _kind(frame)
            if len(cache) < _CACHE_LIMIT:
                _pinned.append(code)
                cache[id(code)] = kind
        if kind:
            if kind != _APPLICATION:
                return None
            where = (id(code), frame.f_lineno)
            text = _located.get(where)
            if text is None:
                text = f"{code.co_filename}:{frame.f_lineno}"
                if len(_located) < _CACHE_LIMIT:  # its code is pinned above: the id stays its own
                    _located[where] = text
            return text
        frame = frame.f_back
    return None


# --- which channel a read came through -----------------------------------------------------------


def _codes() -> dict[CodeType, str]:
    codes: dict[CodeType, str] = {}
    for name, channel in (
        ("_asdict_inner", "asdict"),
        ("_astuple_inner", "astuple"),
        ("replace", "replace"),
        ("_replace", "replace"),
        ("_dataclass_getstate", "pickle"),
    ):
        fn = getattr(dataclasses, name, None)
        if fn is not None:
            codes[fn.__code__] = channel
    return codes


_CHANNEL_PINNED = _codes()  # keeps the codes alive: _CHANNEL_CODES is keyed by their ids
_CHANNEL_CODES = {id(code): channel for code, channel in _CHANNEL_PINNED.items()}
_GENERATED = {"__eq__": "eq", "__hash__": "hash", "__repr__": "repr", "__getstate__": "pickle"}
_PYDANTIC_DUMPS = frozenset(
    {"dump_python", "dump_json", "model_dump", "model_dump_json", "to_python", "to_json"}
)
_PYDANTIC = ("pydantic", "pydantic_core")
_IN_PYDANTIC = tuple(f"{name}." for name in _PYDANTIC)


def channel_of(frame: FrameType | None) -> str:
    """The channel a read came through, from the frame that did the read (slow path only)."""
    if frame is None:
        return "attribute"
    code = frame.f_code
    known = _CHANNEL_CODES.get(id(code))
    if known is not None:
        return known
    if code.co_filename == "<string>":  # methods dataclasses generates
        return _GENERATED.get(code.co_name, "attribute")
    if code.co_name in _PYDANTIC_DUMPS:  # pydantic serializing a dataclass reads its attributes
        module = frame.f_globals.get("__name__")
        if isinstance(module, str) and (module in _PYDANTIC or module.startswith(_IN_PYDANTIC)):
            return "dump"
    return "attribute"


def caller(depth: int) -> FrameType | None:
    """The frame ``depth`` levels above the function that calls this one, if there is one."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
