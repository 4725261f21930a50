"""The id grammar: purpose ids and the hierarchy their dots imply, names (categories,
recipients) and subject ids, and the validation of lists of them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from .exceptions import ConfigurationError

MAX_LENGTH = 128
#: Longest subject id accepted, in characters.
MAX_SUBJECT_LENGTH = 256
_SEGMENT = r"[a-z][a-z0-9_]*"
_ID = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*\Z")


def is_purpose_id(value: object) -> bool:
    """True iff ``value`` is a well-formed purpose id (it may still be unknown to a policy)."""
    return isinstance(value, str) and len(value) <= MAX_LENGTH and _ID.match(value) is not None


def describe_bad_id(value: object) -> str:
    """Why ``value`` is not a purpose id, in words that never echo a long or odd value."""
    if not isinstance(value, str):
        return f"a purpose id must be a string, not {type(value).__name__}"
    if len(value) > MAX_LENGTH:
        return f"a purpose id has at most {MAX_LENGTH} characters (got {len(value)})"
    shown = value if value.isascii() and value.isprintable() and len(value) <= 64 else "<redacted>"
    return (
        f"{shown!r} is not a purpose id: use lowercase ASCII segments [a-z][a-z0-9_]* "
        "joined by dots, such as 'recruitment.selection'"
    )


def parent(purpose: str) -> str | None:
    head, dot, _ = purpose.rpartition(".")
    return head if dot else None


def ancestors(purpose: str) -> Iterator[str]:
    """Strict ancestors, nearest first: ``a.b.c`` gives ``a.b`` then ``a``."""
    current = parent(purpose)
    while current is not None:
        yield current
        current = parent(current)


def is_within(purpose: str, root: str) -> bool:
    """True iff ``purpose`` is ``root`` or one of its descendants."""
    return purpose == root or purpose.startswith(root + ".")


def is_name(value: object) -> bool:
    """True iff ``value`` is a name: one lowercase segment ``[a-z][a-z0-9_]*`` (a category or a
    recipient of the policy)."""
    return is_purpose_id(value) and "." not in value  # type: ignore[operator]


def purpose_ids(values: Iterable[str] | str, what: str) -> tuple[str, ...]:
    """``values`` (one id or several) as a tuple; ConfigurationError naming ``what`` if one is
    not a purpose id."""
    out = (values,) if isinstance(values, str) else tuple(values)
    for pid in out:
        if not is_purpose_id(pid):
            raise ConfigurationError(f"{what}: {describe_bad_id(pid)}")
    return out


def names(values: Iterable[str] | str, what: str) -> tuple[str, ...]:
    """``values`` (one name or several) as a tuple; ConfigurationError naming ``what`` if one
    is not a name."""
    out = (values,) if isinstance(values, str) else tuple(values)
    for name in out:
        if not is_name(name):
            raise ConfigurationError(
                f"{what}: a recipient is a policy name, one lowercase segment [a-z][a-z0-9_]*"
            )
    return out


def validate_subject(subject: object) -> str:
    """A subject id is a non-empty str of at most 256 characters; the message never echoes it."""
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_LENGTH:
        raise ConfigurationError(
            f"a subject id is a non-empty str of at most {MAX_SUBJECT_LENGTH} characters "
            f"(got {type(subject).__name__})"
        )
    return subject
