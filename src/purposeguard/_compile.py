"""Policy → CompiledPolicy: closures precomputed once, so a decision is a set membership test."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ._ids import ancestors, is_purpose_id
from ._policy import Mode, Policy
from .exceptions import ConfigurationError, PolicyError

__all__ = ["CompiledPolicy", "PerGeneration", "Tag", "compile_policy"]

K = TypeVar("K")
V = TypeVar("V")

_generations = itertools.count(1)
_ALLOW_CACHE_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class Tag:
    """The intended purposes of some data: allowed (A), prohibited (P) and a mode override."""

    collected_for: tuple[str, ...]
    prohibited: tuple[str, ...] = ()
    mode: Mode | None = None

    @classmethod
    def of(
        cls, collected_for: Iterable[str], prohibited: Iterable[str] = (), mode: Mode | None = None
    ) -> Tag:
        """A tag with sorted, de-duplicated purposes: declaration order never matters."""
        if isinstance(collected_for, str) or isinstance(prohibited, str):
            raise ConfigurationError(
                "collected_for and prohibited take a sequence of purpose ids, not a str"
            )
        return cls(tuple(sorted(set(collected_for))), tuple(sorted(set(prohibited))), mode)

    def unknown(self, purposes: Mapping[str, Any] | frozenset[str]) -> list[str]:
        return [p for p in (*self.collected_for, *self.prohibited) if p not in purposes]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledPolicy:
    """An immutable, compiled policy. ``generation`` grows with every compile in the process and
    is never reused, so a cache keyed by it (:class:`PerGeneration`) never serves a value derived
    from another policy."""

    policy: Policy
    generation: int
    purposes: frozenset[str]
    #: purpose → itself and all its descendants
    below: Mapping[str, frozenset[str]]
    #: purpose → itself, its ancestors and its descendants
    around: Mapping[str, frozenset[str]]
    #: Y → every X (with descendants) declared compatible_with Y
    compatible_into: Mapping[str, frozenset[str]]
    #: X → the purposes X is declared compatible_with
    compatible: Mapping[str, tuple[str, ...]]
    modes: Mapping[str, Mode]
    field_tags: Mapping[str, Tag]
    #: field path → the category the policy's ``fields:`` entry puts it in
    field_categories: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: strict category → its closed purpose list with descendants (consent never widens it)
    strict: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    #: the policy's id, version and default mode (copied out: every violation reads them)
    id: str = ""
    version: str = ""
    default_mode: Mode = "enforce"

    def allowed_set(self, tag: Tag) -> frozenset[str]:
        """Every declared purpose under which data with ``tag`` may be used."""
        cache = _allow_sets.get(self)
        cached = cache.get(tag)
        if cached is not None:
            return cached
        down: set[str] = set()
        for a in tag.collected_for:
            down |= self.below.get(a, frozenset())
        widened = set(down)
        for y in down:
            widened |= self.compatible_into.get(y, frozenset())
        for p in tag.prohibited:
            widened -= self.around.get(p, frozenset())
        result = frozenset(widened)
        if len(cache) < _ALLOW_CACHE_LIMIT:
            cache[tag] = result  # benign race: equal values
        return result

    def check_tag(self, tag: Tag, where: str) -> None:
        """Raise PolicyError if ``tag`` names a purpose this policy does not declare."""
        unknown = tag.unknown(self.purposes)
        if unknown:
            raise PolicyError(
                f"{where} names purposes the policy does not declare: {', '.join(unknown)}",
                file=self.policy.source or "<python>",
                path="purposes",
                fix=f"declare them in policy {self.id}@{self.version} or fix the tag",
            )


def compile_policy(policy: Policy) -> CompiledPolicy:
    ids = frozenset(policy.purposes)
    children: dict[str, set[str]] = {p: set() for p in ids}
    for p in ids:
        for a in ancestors(p):
            children[a].add(p)
    below = {p: frozenset({p, *children[p]}) for p in ids}
    around = {p: below[p] | frozenset(ancestors(p)) for p in ids}
    into: dict[str, set[str]] = {}
    for x, spec in policy.purposes.items():
        for y in spec.compatible_with:
            into.setdefault(y, set()).update(below[x])
    field_tags = {
        path: Tag.of(t.collected_for, t.prohibited, t.mode) for path, t in policy.fields.items()
    }
    strict = {
        name: frozenset().union(*(below[p] for p in c.purposes))
        for name, c in policy.categories.items()
        if c.strict
    }
    assert all(is_purpose_id(p) for p in ids)  # guaranteed by Policy validation
    return CompiledPolicy(
        policy=policy,
        generation=next(_generations),
        purposes=ids,
        below=MappingProxyType(below),
        around=MappingProxyType(around),
        compatible_into=MappingProxyType({y: frozenset(xs) for y, xs in into.items()}),
        compatible=MappingProxyType(
            {x: s.compatible_with for x, s in policy.purposes.items() if s.compatible_with}
        ),
        modes=MappingProxyType({p: s.mode for p, s in policy.purposes.items() if s.mode}),
        field_tags=MappingProxyType(field_tags),
        field_categories=MappingProxyType(
            {path: t.category for path, t in policy.fields.items() if t.category is not None}
        ),
        strict=MappingProxyType(strict),
        id=policy.id,
        version=policy.version,
        default_mode=policy.mode,
    )


class PerGeneration(Generic[K, V]):
    """Values derived from compiled policies, kept beside them: one dict per policy generation,
    for the ``keep`` newest generations asked about (a reload leaves the old one to age out).

    ``get(compiled)`` is the dict for that policy; callers bound what they put in it.
    """

    __slots__ = ("_keep", "_lock", "_maps")

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._maps: dict[int, dict[K, V]] = {}
        self._lock = threading.Lock()

    def get(self, compiled: CompiledPolicy) -> dict[K, V]:
        found = self._maps.get(compiled.generation)
        if found is not None:
            return found
        with self._lock:
            found = self._maps.get(compiled.generation)
            if found is None:
                maps = dict(self._maps)
                found = maps[compiled.generation] = {}
                for old in sorted(maps)[: -self._keep]:
                    del maps[old]
                self._maps = maps  # copy-on-write: readers never see a dict mid-change
            return found


_allow_sets: PerGeneration[Tag, frozenset[str]] = PerGeneration(keep=16)
