"""Frames: which line of the application caused a violation, and which channel a read came
through. (Interim: the old directory-based skip, moved here unchanged.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import CodeType, FrameType

__all__ = ["caller", "caller_location", "channel_of"]

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_SKIP_DIRS: tuple[str, ...] = (_PACKAGE_DIR,)
for _name in ("wrapt", "pydantic", "pydantic_core", "contextlib", "functools"):
    _mod = sys.modules.get(_name)
    if _mod is not None and getattr(_mod, "__file__", None):
        _SKIP_DIRS += (str(Path(_mod.__file__).resolve().parent),)  # type: ignore[arg-type]
_DEMO_FILE = str(Path(__file__).resolve().with_name("_demo.py"))  # user code, though packaged
_SKIP_FILES = tuple(f"{os.sep}{name}.py" for name in ("contextlib", "functools"))
_skip_code: dict[CodeType, bool] = {}


def caller_location() -> str | None:
    """``file:line`` of the first frame outside purposeguard and the libraries it drives."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        skip = _skip_code.get(code)
        if skip is None:
            filename = code.co_filename
            skip = (
                filename.startswith(_SKIP_DIRS) or filename.endswith(_SKIP_FILES)
            ) and filename != _DEMO_FILE
            if len(_skip_code) < 10_000:
                _skip_code[code] = skip
        if not skip:
            return f"{code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _codes() -> dict[CodeType, str]:
    import dataclasses

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


_CHANNEL_CODES = _codes()
_GENERATED = {"__eq__": "eq", "__hash__": "hash", "__repr__": "repr", "__getstate__": "pickle"}
_PYDANTIC_DUMPS = frozenset(
    {"dump_python", "dump_json", "model_dump", "model_dump_json", "to_python", "to_json"}
)


def _pydantic_dir() -> str:
    import pydantic

    return str(Path(pydantic.__file__).resolve().parent)


_PYDANTIC_DIR = _pydantic_dir()


def channel_of(frame: FrameType | None) -> str:
    """The channel a read came through, from the frame that did the read (slow path only)."""
    if frame is None:
        return "attribute"
    code = frame.f_code
    known = _CHANNEL_CODES.get(code)
    if known is not None:
        return known
    if code.co_filename == "<string>":  # methods dataclasses generates
        return _GENERATED.get(code.co_name, "attribute")
    if code.co_name in _PYDANTIC_DUMPS and code.co_filename.startswith(_PYDANTIC_DIR):
        return "dump"  # pydantic serializing a dataclass reads its attributes
    return "attribute"


def caller(depth: int) -> FrameType | None:
    try:
        return sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
