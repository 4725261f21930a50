"""The purpose-id grammar and the hierarchy that dotted ids imply."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

MAX_LENGTH = 128
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


def down(roots: Iterable[str], universe: Iterable[str]) -> frozenset[str]:
    """↓X: the members of ``universe`` that are in ``roots`` or below one of them."""
    roots = tuple(roots)
    return frozenset(p for p in universe if any(is_within(p, r) for r in roots))


def up_down(roots: Iterable[str], universe: Iterable[str]) -> frozenset[str]:
    """↕X: the members of ``universe`` that are in ``roots``, above one, or below one."""
    roots = tuple(roots)
    return frozenset(p for p in universe if any(is_within(p, r) or is_within(r, p) for r in roots))
