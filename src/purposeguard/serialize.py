"""Guarded records for serializers that are not pydantic: orjson, msgspec, anything that takes
plain data.

orjson and msgspec serialize dataclasses themselves, by reading instance storage or attributes
from C, and know nothing of pydantic models. What they find in a guarded record is its vault
(``<guarded>``), not its values: this module is the supported way to hand them guarded records.

- :func:`to_builtins` turns guarded records, and the lists, tuples, sets and dicts that hold
  them, into plain dicts and lists. Every guarded value is read through its field, so each read
  is checked and recorded (channel ``dump``), as ``model_dump`` is.
- :func:`json_default` is the same conversion as a hook: ``orjson.dumps(obj,
  default=json_default, option=orjson.OPT_PASSTHROUGH_DATACLASS)`` and
  ``msgspec.json.encode(obj, enc_hook=json_default)``.

The module imports neither orjson nor msgspec. See docs/models.md, "orjson, msgspec and other
serializers".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from . import _frames
from ._guard import raised
from ._sealed import Sealed, Vault
from .exceptions import PurposeViolation
from .models import violation_of

__all__ = ["json_default", "to_builtins"]

#: values returned as they are, tested first: most of a record is these
_LEAVES: Final = frozenset({str, int, float, bool, type(None), bytes})
_SEALED_MESSAGE: Final = (
    "a serializer reached the sealed values of a guarded record (<guarded>): it read the "
    "record's storage (vars(), __dict__ or its slots) instead of its fields. Serialize the record "
    "itself: purposeguard.serialize.to_builtins(record), or for orjson "
    "orjson.dumps(obj, default=purposeguard.serialize.json_default, "
    "option=orjson.OPT_PASSTHROUGH_DATACLASS)"
)


def to_builtins(obj: Any, *, mode: Literal["python", "json"] = "python") -> Any:
    """``obj`` as plain data, every guarded value in it read under the active purpose.

    - a pydantic model (a ``GuardedModel`` or one holding guarded records) becomes its own
      ``model_dump(mode=mode)``: checked per field, channel ``dump``, with the model's
      ``purposeguard_on_denied`` (raise, redact or omit);
    - a dataclass instance (``@pg.guarded`` or not) becomes a dict of its fields, each read
      through its attribute, converted in turn; a guarded field's read is checked and recorded
      with channel ``dump`` (a dataclass has no redact or omit: a denied field raises);
    - a dict becomes a dict with its values converted (keys are kept); a list, tuple, set or
      frozenset becomes a list;
    - any other value is returned as it is, for the serializer to handle.

    ``mode`` is passed to ``model_dump``: ``"json"`` gives a model's JSON form (what
    ``model_dump_json`` writes), ``"python"`` its Python values.

    Raises PurposeViolation for a denied use in enforce mode (recorded first; in monitor mode
    the value is returned and the violation recorded), and TypeError for a sealed value met
    outside its record (``vars(record)``), which is never converted.
    """
    if type(obj) in _LEAVES:
        return obj
    if isinstance(obj, BaseModel):
        return _dump_model(obj, mode)
    if isinstance(obj, dict):
        return {key: to_builtins(value, mode=mode) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_builtins(value, mode=mode) for value in obj]
    if isinstance(obj, Sealed | Vault):
        raise TypeError(_SEALED_MESSAGE)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _fields_of(obj, mode)
    return obj


def json_default(obj: Any) -> Any:
    """The ``default=`` hook of ``orjson.dumps`` and the ``enc_hook=`` of msgspec's encoders:
    a pydantic model or a dataclass as :func:`to_builtins` converts it (``mode="json"``), a
    set as a list.

    orjson calls it for a dataclass only with ``option=orjson.OPT_PASSTHROUGH_DATACLASS``
    (without it, orjson reads the dataclass itself and finds the vault). A PurposeViolation
    raised here is recorded before the serializer sees it: orjson raises its ``TypeError``
    (``orjson.JSONEncodeError``) with the violation as ``__cause__``; msgspec raises the
    violation itself. Raises TypeError for any other type, and for a sealed value.
    """
    if isinstance(obj, Sealed | Vault):
        raise TypeError(_SEALED_MESSAGE)
    if isinstance(obj, BaseModel | set | frozenset) or (
        dataclasses.is_dataclass(obj) and not isinstance(obj, type)
    ):
        return to_builtins(obj, mode="json")
    raise TypeError(
        f"Type is not JSON serializable: {type(obj).__qualname__}; "
        "purposeguard.serialize.json_default converts pydantic models, dataclasses and sets: "
        "convert other types in a default of your own that calls json_default for the rest"
    )


def _dump_model(model: BaseModel, mode: Literal["python", "json"]) -> Any:
    kept: list[PurposeViolation | None] = [None]
    token = raised.set(kept)
    try:
        return model.model_dump(mode=mode)
    except PydanticSerializationError as exc:  # a plain model around guarded records
        found = violation_of(exc, kept)
        if found is exc:
            raise
        raise found from None
    finally:
        raised.reset(token)


def _fields_of(record: Any, mode: Literal["python", "json"]) -> dict[str, Any]:
    """A dataclass's fields, each read through its attribute: a guarded field's descriptor
    checks the read. A loop, not a comprehension, so that the read is this function's frame on
    every Python version: that frame names the channel."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        out[field.name] = to_builtins(getattr(record, field.name), mode=mode)
    return out


def _reads_as(channel: str, function: Callable[..., Any]) -> None:
    """Make a guarded read made by ``function``'s own frame record ``channel``, as a read made
    by ``dataclasses.asdict`` records ``asdict``. (The frame tables of ``_frames`` are keyed by
    code object; ``function`` lives as long as this module, so its code stays pinned.)"""
    code = function.__code__
    _frames._CHANNEL_PINNED[code] = channel
    _frames._CHANNEL_CODES[id(code)] = channel


_reads_as("dump", _fields_of)
