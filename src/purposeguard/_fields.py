"""The one field decision: whether a purpose may use a field of a record.

Every channel asks :func:`decide` (through :func:`admit` when the use happens, :func:`permits`
when it is only asked): attribute reads, every dump, ``==``/``hash``, pickling, ``pg.check``
(``field=``), ``pg.check_subject``, purpose notices and provision. The rule, in order:

1. the tags: every tag must allow the purpose (DESIGN §3; ``no_purpose``, ``unknown_purpose``,
   ``prohibited`` and ``not_allowed`` take precedence in that order, whichever tag gives them);
2. a **strict** category (My Number) is a closed list: a purpose the tags allow but the list
   leaves out is denied (``strict_category``), and nothing below widens it;
3. **consent** widens a ``not_allowed``: the record's own consent (its ``pg.Consent`` field, as if
   its purposes were collected-for purposes, prohibitions still applying), then the subject
   registry's consent to a purpose the active one is, or is below;
4. a subject's **suspension** of use for the purpose denies an allowed use (``suspended``);
5. **retention**: an allowed use of a record past the field's retention period, counted from the
   record's collection time, is denied (``expired``); a record that does not say when it was
   collected is past it. A question asked without a clock (``now=None``: ``pg.check``) leaves
   retention out.

The fast paths of the front ends test ``guard.allowed`` only; it is derived from this rule: the
purposes step 1 and 2 allow, when no record can change the answer (empty for a field with a
retention period, whose every use reads the clock). Steps 3 to 5 answer from more than the purpose
and the policy, so they mark a value being computed for ``pg.cache`` as not to be kept
(:mod:`purposeguard._derivation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, NamedTuple

from . import _time
from ._compile import CompiledPolicy, Tag
from ._context import resolve
from ._decide import ALLOWING, Rule
from ._derivation import uncacheable
from ._events import subject_hash
from ._guard import Binding, FieldRef, Guard, field_ref, violate
from ._ids import MAX_SUBJECT_LENGTH, is_purpose_id, is_within
from ._state import SubjectRestrictions, state
from .exceptions import PolicyError

__all__ = [
    "ALLOWING",
    "MISSING",
    "FieldBinding",
    "FieldGuard",
    "OnDenied",
    "PickleMode",
    "Record",
    "admit",
    "binding_for",
    "decide",
    "field_guard",
    "permits",
    "question",
    "record_of",
    "retention_of",
    "subject_of",
]

#: What a dump does with a field the active purpose may not use, in enforce mode (in monitor mode
#: the value always passes and the violation is recorded): raise PurposeViolation, write ``None``
#: in its place, or leave the field out.
OnDenied = Literal["raise", "redact", "omit"]
#: ``refuse``: a guarded value is never pickled. ``purpose``: it is pickled under a purpose that
#: may use it (a recorded violation otherwise), and comes back sealed with its field's tags.
PickleMode = Literal["refuse", "purpose"]

MISSING: Final[Any] = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()
_CONSENT_CACHE_LIMIT = 1024
_MICROSECOND: Final = timedelta(microseconds=1)


class Record(NamedTuple):
    """What a record says about itself: the purposes its subject consented to, its subject, and
    when it was collected (microseconds since the epoch, or None when the record does not say).
    Immutable; a NamedTuple, since every guarded record builds one. Its ``repr`` never shows the
    subject id."""

    consent: tuple[str, ...]
    subject: object
    collected_at: int | None = None

    def __repr__(self) -> str:
        return f"<purposeguard record consent={self.consent!r}>"


def record_of(consent: object, subject: object, collected_at: object = None) -> Record | None:
    """A record's facts, or ``None`` when it names no consent, subject or collection time."""
    purposes: tuple[str, ...] = ()
    if consent and not isinstance(consent, str):
        purposes = tuple(sorted({p for p in consent if is_purpose_id(p)}))  # type: ignore[attr-defined]
    at = None if collected_at is None else _time.epoch_us(collected_at)
    if not purposes and subject is None and at is None:
        return None
    return Record(purposes, subject, at)


def subject_of(record: Record | None) -> str | None:
    """The record's subject id as the registry knows it (a str), or None."""
    if record is None or record.subject is None:
        return None
    subject = record.subject if isinstance(record.subject, str) else str(record.subject)
    return subject if 0 < len(subject) <= MAX_SUBJECT_LENGTH else None


@dataclass(frozen=True, slots=True)
class FieldBinding(Binding):
    """A field's guard bound to one compiled policy.

    ``usable`` is every purpose the tags allow within the strict category's closed list
    (``closed``, with descendants, or None); ``allowed``, the set the fast paths test, is the same
    set for a field without a retention period and empty for one with a period.
    """

    usable: frozenset[str] = frozenset()
    closed: frozenset[str] | None = None
    category: str | None = None
    retention: timedelta | None = None
    retention_us: int | None = None


_UNBOUND_FIELD = FieldBinding(None, (), frozenset())


class FieldGuard(Guard):
    """The guard of one field: its tags, its strict category, its retention, and the model's
    dump options (``default``, ``on_denied``, ``pickle``)."""

    __slots__ = (
        "category",
        "consent_cache",
        "default",
        "lineage",
        "on_denied",
        "own_retention",
        "pickle",
        "timed",
    )

    names_field = True
    binding: FieldBinding

    def __init__(
        self,
        path: str,
        tags: Iterable[Tag],
        *,
        category: str | None = None,
        default: Any = MISSING,
        on_denied: OnDenied = "raise",
        pickle: PickleMode = "refuse",
        retention: timedelta | None = None,
        timed: bool = False,
        lineage: tuple[str, ...] = (),
    ) -> None:
        tags = list(tags)
        first = tags[0] if tags else None
        super().__init__(path, [FieldRef(path, first, lineage), *tags[1:]])
        #: the paths of this field in its class's guarded bases (their policy entries apply)
        self.lineage = lineage
        self.binding = _UNBOUND_FIELD
        self.category = category
        self.default = default
        self.on_denied: OnDenied = on_denied
        self.pickle: PickleMode = pickle
        #: the retention the class declares (``CollectedFor(retention=...)``)
        self.own_retention = retention
        #: whether the record has a CollectedAt field
        self.timed = timed
        self.consent_cache: tuple[FieldBinding, dict[tuple[str, ...], frozenset[str]]] = (
            _UNBOUND_FIELD,
            {},
        )

    @property
    def usable(self) -> frozenset[str]:
        return self.binding.usable

    @property
    def retention(self) -> timedelta | None:
        return self.binding.retention

    def prepare(self, compiled: CompiledPolicy | None) -> FieldBinding:
        """Bind to ``compiled``. Raises PolicyError for a category the policy does not declare,
        a strict category whose closed list the tags go beyond, and a retention period on a
        record with no collection time."""
        return self.bind(compiled, definition=True)

    def bind(self, compiled: CompiledPolicy | None, *, definition: bool) -> FieldBinding:
        """The binding under ``compiled``. A ``definition`` (a class's field) must fit the
        policy (see :meth:`prepare`); a question (``pg.check``) is answered as it stands: a
        strict category's closed list then simply narrows the tags."""
        plain = super().prepare(compiled)
        if compiled is None:
            return FieldBinding(None, plain.tags, frozenset())
        policy = compiled.policy
        source = policy.source or "<python>"
        category = self.category or next(
            filter(None, map(compiled.field_categories.get, (self.name, *self.lineage))), None
        )
        if category is not None and category not in policy.categories:
            raise PolicyError(
                f"field {self.name} is in category {category!r}, which the policy does not declare",
                file=source,
                path=f"categories.{category}",
                fix=f"declare {category!r} under categories, or fix the field's category",
            )
        closed = compiled.strict.get(category) if category is not None else None
        usable = plain.allowed
        if closed is not None and definition:
            for tag in plain.tags:
                outside = [a for a in tag.collected_for if a not in closed]
                if outside:
                    raise PolicyError(
                        f"field {self.name} is in strict category {category!r}, which may be "
                        f"used only for its listed purposes, not {', '.join(outside)}",
                        file=source,
                        path=f"categories.{category}.purposes",
                        fix="remove those purposes from the field's tags",
                    )
        if closed is not None:
            usable = usable & closed
        retention = retention_of(compiled, (self.name, *self.lineage), category, self.own_retention)
        if retention is not None and not self.timed and definition:
            raise PolicyError(
                f"field {self.name} has a retention period, but its record has no collection "
                "time to count it from",
                file=source,
                path=f"fields.{self.name}",
                fix="mark a timezone-aware datetime field of the record with pg.CollectedAt, or "
                "remove the retention from the field's entry and category",
            )
        return FieldBinding(
            compiled,
            plain.tags,
            usable if retention is None else frozenset(),
            usable=usable,
            closed=closed,
            category=category,
            retention=retention,
            retention_us=None if retention is None else retention // _MICROSECOND,
        )

    def install(self, prepared: object) -> None:
        assert isinstance(prepared, FieldBinding)
        self.consent_cache = (prepared, {})
        super().install(prepared)

    def consent_allowed(self, binding: FieldBinding, consent: tuple[str, ...]) -> frozenset[str]:
        """The purposes the field may be used for on a record whose subject consented to
        ``consent``: its tags with those purposes added, prohibitions still applying."""
        cached_for, cache = self.consent_cache
        if cached_for is binding:
            hit = cache.get(consent)
            if hit is not None:
                return hit
        compiled = binding.compiled
        if compiled is None:
            return frozenset()
        extra = tuple(p for p in consent if p in compiled.purposes)
        widened: frozenset[str] | None = None
        for tag in binding.tags:
            tag_allowed = compiled.allowed_set(
                Tag.of((*tag.collected_for, *extra), tag.prohibited, tag.mode)
            )
            widened = tag_allowed if widened is None else widened & tag_allowed
        result = widened if widened is not None else frozenset()
        if cached_for is binding and len(cache) < _CONSENT_CACHE_LIMIT:
            cache[consent] = result
        return result

    def own_tags(self) -> list[Tag]:
        """The tags the field's class declares (the policy's come on top, at binding)."""
        first = self.sources[0]
        rest = [s for s in self.sources[1:] if isinstance(s, Tag)]
        return [first.tag, *rest] if isinstance(first, FieldRef) and first.tag else rest

    def is_default(self, other: object) -> bool:
        """True iff ``other`` is this field's (public) default value."""
        default = self.default
        if default is MISSING:
            return False
        if other is default:
            return True
        try:
            return type(other) is type(default) and bool(other == default)
        except Exception:
            return False


def question(
    path: str,
    extra: Tag | None,
    *,
    of: FieldGuard | None = None,
    category: str | None = None,
    retention: timedelta | None = None,
) -> FieldGuard:
    """An unregistered guard for a question about the field at ``path`` (``pg.check``,
    ``pg.check_subject``, notices): the tags and category of its class's guard ``of`` (if the
    class is guarded), plus ``extra``, an explicit ``category`` and a ``retention``."""
    tags = [t for t in (of.own_tags() if of is not None else ()) if t is not None]
    if extra is not None:
        tags.append(extra)
    own = [p for p in (retention, of.own_retention if of is not None else None) if p]
    return FieldGuard(
        path,
        tags,
        category=category or (of.category if of is not None else None),
        retention=min(own) if own else None,
        timed=True,
    )


def retention_of(
    compiled: CompiledPolicy | None,
    paths: tuple[str, ...],
    category: str | None,
    own: timedelta | None,
) -> timedelta | None:
    """The retention period in force for the field at ``paths`` (its own, then its lineage):
    the shortest of its own (the class's ``CollectedFor(retention=...)`` or a caller's), its
    policy ``fields:`` entries' and its category's; None if none of them sets one."""
    periods = [own] if own is not None else []
    if compiled is not None:
        for path in paths:
            spec = compiled.policy.fields.get(path)
            if spec is not None and spec.retention is not None:
                periods.append(spec.retention)
        found = compiled.policy.categories.get(category) if category else None
        if found is not None and found.retention is not None:
            periods.append(found.retention)
    return min(periods) if periods else None


def decide(
    guard: FieldGuard,
    binding: FieldBinding,
    purpose: str | None,
    record: Record | None,
    subjects: SubjectRestrictions | None,
    now: int | None,
) -> tuple[Rule, Tag | None]:
    """The rule of the module docstring: the deciding :class:`Rule` (its ``kind`` is the
    reason; ``allowed`` and ``consent`` allow) and the tag the event should name."""
    rule, tag = guard.decide(purpose, binding)
    if rule.kind == "allowed":
        if binding.closed is not None and purpose not in binding.closed:
            return Rule("strict_category", matched=binding.category), tag
    elif rule.kind == "not_allowed" and binding.closed is None:
        consent = record.consent if record is not None else ()
        subject = subject_of(record)
        if consent or (subjects is not None and subject is not None):
            uncacheable()  # the answer is the record's or the registry's, not the policy's
        if consent and purpose in guard.consent_allowed(binding, consent):
            matched = next((c for c in consent if purpose and is_within(purpose, c)), None)
            rule = Rule("consent", matched=matched)
        elif subjects is not None and subject is not None and subject in subjects.consenting:
            root = subjects.purpose_consent(subject, purpose) if purpose else None
            if root is None:
                return rule, tag
            rule = Rule("consent", matched=root)
        else:
            return rule, tag
    else:
        return rule, tag
    subject = subject_of(record)
    if subjects is not None and subject is not None and subject in subjects.restricted:
        uncacheable()  # the subject's suspensions may change without changing the set
        suspended = subjects.use_suspension(subject, purpose)
        if suspended is not None:
            return Rule("suspended", matched=suspended), tag
    period = binding.retention_us
    if period is not None and now is not None:
        uncacheable()  # the clock decides
        at = record.collected_at if record is not None else None
        if at is None or now >= at + period:
            return Rule("expired"), tag
    return rule, tag


def admit(guard: FieldGuard, record: Record | None, raw: object, channel: str) -> None:
    """The slow path of every guarded use: return if the use may proceed (allowed, or monitor
    mode, recorded); raise PurposeViolation in enforce mode."""
    purpose = resolve(raw)
    binding = guard.binding
    rule, tag = decide(guard, binding, purpose, record, state.registry, _time.now_us())
    if rule.kind in ALLOWING:
        return
    subject = subject_hash(record.subject) if record is not None else None
    violate(guard, purpose, rule, tag, channel, subject, binding=binding)


def permits(guard: FieldGuard, purpose: str | None, record: Record | None) -> bool:
    """Whether a use would be allowed now, without recording anything."""
    binding = guard.binding
    rule, _ = decide(guard, binding, purpose, record, state.registry, _time.now_us())
    return rule.kind in ALLOWING


def field_guard(owner: object, name: str) -> FieldGuard | None:
    """The guard of field ``name`` of a guarded class (a GuardedModel or ``@pg.guarded``
    dataclass), or None."""
    layout = getattr(owner, "__purposeguard_layout__", None)
    guards: Mapping[str, Any] | None = getattr(layout, "guards", None)
    guard = guards.get(name) if guards else None
    return guard if isinstance(guard, FieldGuard) else None


def binding_for(owner: Any, name: str, compiled: CompiledPolicy | None) -> FieldBinding:
    """The binding of field ``name`` of ``owner`` (a class, or a dotted module path) under
    ``compiled``, as a read of the field has it: its guard's if the class is guarded, else a
    question's from the policy's ``fields:`` entry. Raises PolicyError for a field that has no
    purposes, or whose tags the policy does not declare."""
    guard = field_guard(owner, name)
    if guard is not None and guard.binding.compiled is compiled:
        return guard.binding
    path = field_ref(owner, name).path
    return question(path, None, of=guard).bind(compiled, definition=False)
