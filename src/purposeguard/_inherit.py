"""What a subclass inherits of its guarded bases' fields.

A subclass that re-declares a guarded field (``email: Annotated[str, Field(max_length=254)]``,
to add a constraint) keeps the field guarded: its own markers are merged with those of every
guarded base that has the field. Merged tags are all in force (a use must comply with each), so
a subclass's own ``CollectedFor`` narrows the inherited purposes; one that names a purpose the
base does not cover, lowers the mode to monitor, or moves the field to another category is
refused here, unless it says ``CollectedFor(..., widen=True)``, which replaces what the bases
declare. The roles (``SubjectId``, ``Consent``, ``CollectedAt``) are inherited too. The policy
file's ``fields:`` entries for a base's path keep tagging the field in every subclass: those
paths are the field's *lineage*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ._markers import CollectedAt, CollectedFor, Consent, SubjectId, is_marker
from .exceptions import ConfigurationError

__all__ = ["Inherited", "guarded_bases", "inherit", "own_markers"]

_ROLES = (SubjectId, Consent, CollectedAt)


class Inherited(Protocol):
    """What a subclass reads of a guarded base's layout."""

    path: str
    pickle: Any
    markers: Mapping[str, tuple[Any, ...]]
    lineage: Mapping[str, tuple[str, ...]]


def guarded_bases(cls: type) -> list[Inherited]:
    """The layouts of ``cls``'s guarded bases, nearest first (in method resolution order)."""
    found: list[Inherited] = []
    for base in cls.__mro__[1:]:
        layout = base.__dict__.get("__purposeguard_layout__")
        if layout is not None and all(layout is not f for f in found):
            found.append(layout)
    return found


def own_markers(metadata: Iterable[Any]) -> tuple[Any, ...]:
    """The purposeguard markers among a field's ``Annotated`` metadata."""
    return tuple(
        m for m in metadata if isinstance(m, CollectedFor) or any(is_marker(m, r) for r in _ROLES)
    )


def inherit(
    path: str, name: str, metadata: Sequence[Any], bases: Sequence[Inherited]
) -> tuple[list[Any], tuple[str, ...]]:
    """The metadata of field ``name`` of the class at ``path``, with what its guarded ``bases``
    declare for it added, and its lineage. Raises ConfigurationError for a re-declaration that
    widens the inherited purposes without saying ``widen=True``."""
    declared = [(b, b.markers[name]) for b in bases if name in b.markers]
    if not declared:
        return list(metadata), ()
    own = [m for m in metadata if isinstance(m, CollectedFor)]
    merged = list(metadata)
    lineage: list[str] = []
    if not any(m.widen for m in own):
        tags = {m.tag for m in own}
        for base, markers in declared:
            inherited = [m for m in markers if isinstance(m, CollectedFor)]
            for mine in own:
                if mine.tag not in {m.tag for m in inherited}:
                    _check_narrows(f"{path}.{name}", mine, f"{base.path}.{name}", inherited)
            for marker in inherited:
                if marker.tag not in tags:
                    tags.add(marker.tag)
                    merged.append(marker)
            if name not in base.lineage:
                continue  # not guarded there (a role's field)
            for p in (f"{base.path}.{name}", *base.lineage[name]):
                if p != f"{path}.{name}" and p not in lineage:
                    lineage.append(p)
    for role in _ROLES:
        if not any(is_marker(m, role) for m in merged) and any(
            is_marker(m, role) for _, markers in declared for m in markers
        ):
            merged.append(role)
    return merged, tuple(lineage)


def _check_narrows(
    where: str, mine: CollectedFor, base: str, inherited: Sequence[CollectedFor]
) -> None:
    for theirs in inherited:
        wider = [p for p in mine.tag.collected_for if not _within(p, theirs.tag.collected_for)]
        problem = None
        if wider:
            problem = (
                f"names {', '.join(wider)}, which {base} was not collected for "
                f"({', '.join(theirs.tag.collected_for)})"
            )
        elif mine.tag.mode == "monitor" and theirs.tag.mode != "monitor":
            problem = f"lowers {base}'s mode to monitor"
        elif theirs.category is not None and mine.category not in (None, theirs.category):
            problem = f"moves the field from category {theirs.category!r} to {mine.category!r}"
        if problem is not None:
            raise ConfigurationError(
                f"{where}: its CollectedFor {problem}; a subclass inherits a guarded field's "
                "tags and may only narrow them. Pass CollectedFor(..., widen=True) to replace "
                "the inherited tags on purpose"
            )


def _within(purpose: str, allowed: Iterable[str]) -> bool:
    """Whether ``purpose`` is one of ``allowed`` or a descendant of one."""
    return any(purpose == a or purpose.startswith(a + ".") for a in allowed)
