"""Validation errors that withhold guarded input.

pydantic's ``ValidationError`` quotes the input it rejected, in ``str()``, ``json()`` and
``errors()``: the rejected value of a field, and the whole input of the record when a field is
missing. For a guarded record that input is the very data the guard protects. A guarded model's
validation raises, instead, the same errors with that input withheld: the value at a guarded
location (or at a location holding a guarded record), the values of those keys in a record's
whole input, the whole input when it is not a mapping (a JSON text), and the message of a
validator the application wrote for a guarded field (it may quote the value).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["WITHHELD", "withheld"]

#: What a withheld input reads as, in every form of the error.
WITHHELD: Final = "<withheld>"
#: Error types whose message the application's own code wrote (it may quote the input).
_WRITTEN_BY_THE_APPLICATION: Final = frozenset({"value_error", "assertion_error"})


def withheld(exc: ValidationError, sensitive: frozenset[str]) -> ValidationError:
    """``exc`` with every input at, or under, a ``sensitive`` key withheld (field names and
    aliases of guarded fields, and of fields that hold guarded records)."""
    details: list[InitErrorDetails] = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = error["loc"]
        kind, message, value = error["type"], error["msg"], error.get("input")
        if loc and loc[0] in sensitive:
            value = WITHHELD
            if kind in _WRITTEN_BY_THE_APPLICATION or kind not in _KNOWN:
                message = f"{kind.replace('_', ' ')} (a guarded field's own message is withheld)"
        elif isinstance(value, Mapping):  # the record's whole input, as a missing field reports
            value = {k: (WITHHELD if k in sensitive else v) for k, v in value.items()}
        elif not loc:  # the whole input, not a mapping: a JSON text, a string, a list
            value = WITHHELD
        # a custom error keeps the type and the message as they were (no context: the message
        # is used as it stands, braces and all)
        details.append({"type": PydanticCustomError(kind, message), "loc": loc, "input": value})
    return ValidationError.from_exception_data(exc.title, details)


def _known() -> frozenset[str]:
    from typing import get_args

    from pydantic_core.core_schema import ErrorType

    return frozenset(get_args(ErrorType))


_KNOWN: Final = _known()
