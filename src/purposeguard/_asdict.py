"""``dataclasses.asdict`` and ``astuple`` of guarded records: a denial leaves nothing built.

``asdict`` converts a record field by field, keeping what it has built in its frame's locals
(``result``, and the last converted ``value``); a record inside a plain dataclass or a list is
converted inside the conversion of its parent, whose frame keeps the records converted before
it. When a guarded field is denied, every one of those frames is in the violation's traceback,
and a renderer that shows locals (structlog's, rich's, ``TracebackException(capture_locals=True)``)
would print the allowed values built so far. So before a denial in enforce mode is raised from
a conversion, :func:`clear_built` empties the locals of every ``asdict``/``astuple`` frame on the
stack: they are about to be dropped with the violation.

Deciding every field of the whole conversion before building it was measured first: it cost
an allowed ``asdict`` of guarded records 4 to 7 times the plain one (a purpose decision, a frame
walk and a field walk per record), where clearing costs nothing until a denial.
"""

from __future__ import annotations

import ctypes
import dataclasses
import sys
from types import FrameType

__all__ = ["clear_built"]

_BUILDERS = frozenset(
    getattr(dataclasses, name).__code__
    for name in ("_asdict_inner", "_astuple_inner")
    if hasattr(dataclasses, name)
)
#: the locals of a builder frame that hold what it has built
_BUILT = ("result", "value")


def clear_built() -> None:
    """Set the built locals of every ``asdict``/``astuple`` frame on the stack to ``None``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _BUILDERS:
            _forget(frame)
        frame = frame.f_back


def _forget(frame: FrameType) -> None:
    if sys.version_info >= (3, 13):  # PEP 667: f_locals writes through to the frame
        for name in _BUILT:
            if name in frame.f_code.co_varnames:
                frame.f_locals[name] = None
        return
    local = frame.f_locals  # a snapshot, written back below
    changed = False
    for name in _BUILT:
        if local.get(name) is not None:
            local[name] = None
            changed = True
    if changed:  # what debuggers call to write a frame's locals back
        ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(1))
