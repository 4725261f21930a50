"""Sealed storage: the wrapper a guarded value lives in, and the field guards that open it.

A guarded model keeps each guarded value inside a :class:`Sealed` wrapper, so that the channels
which read an object's storage without going through its attributes (pydantic's serializer reads
``__dict__``; ``vars()``, ``copy`` and ``pickle`` do too) find a wrapper, not the value. The
wrapper's ``repr`` is redacted, its ``==`` and ``hash`` are guarded reads, it refuses pickling and
copying it copies the seal. Only the field descriptor and the serializer open it, after the check.
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, Final, Literal

from . import _config
from ._compile import CompiledPolicy, Tag
from ._context import _current, resolve
from ._decide import Decision, Rule
from ._guard import FieldRef, Guard, subject_hash, violate
from ._ids import is_purpose_id
from .exceptions import PolicyError, PurposeGuardError, PurposeViolation

__all__ = [
    "FieldGuard",
    "Meta",
    "OnDenied",
    "PickleMode",
    "Sealed",
    "SealedPickleError",
    "epoch_us",
    "now_us",
    "within_retention",
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
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

_get = _current.get
_state = _config.state
#: for unpickling a sealed value: field path → its guard (weak: guards die with their classes)
_fields_by_name: weakref.WeakValueDictionary[str, FieldGuard] = weakref.WeakValueDictionary()


class SealedPickleError(PurposeGuardError, TypeError):
    """A guarded value was pickled, which its model refuses (see ``purposeguard_pickle``)."""


def now_us() -> int:
    """The clock retention is measured with: microseconds since the Unix epoch (UTC). Looked up
    at every use, so tests can replace it (``monkeypatch.setattr(_sealed, "now_us", ...)``)."""
    return time.time_ns() // 1000


def epoch_us(value: object) -> int | None:
    """A timezone-aware datetime as microseconds since the Unix epoch; None for anything else
    (a naive datetime names no instant, so it counts as no collection time)."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return (value - _EPOCH) // _MICROSECOND
    return None


@dataclass(frozen=True, slots=True, repr=False)
class Meta:
    """What a record says about itself: the purposes its subject consented to, its subject, and
    when it was collected (microseconds since the epoch, or None when the record does not say).
    Its ``repr`` never shows the subject id."""

    consent: tuple[str, ...]
    subject: object
    collected_at: int | None = None

    def __repr__(self) -> str:
        return f"<purposeguard record meta consent={self.consent!r}>"


def make_meta(consent: object, subject: object, collected_at: object = None) -> Meta | None:
    """A record's meta, or ``None`` when it names no consent, subject or collection time."""
    purposes: tuple[str, ...] = ()
    if consent is not None and not isinstance(consent, str):
        purposes = tuple(sorted({p for p in consent if is_purpose_id(p)}))  # type: ignore[attr-defined]
    at = epoch_us(collected_at)
    if not purposes and subject is None and at is None:
        return None
    return Meta(purposes, subject, at)


class FieldGuard(Guard):
    """The guard of one field: its tags, its strict category, its retention, and the model's
    dump options.

    ``usable`` is every purpose the field may be used for; ``allowed``, the set the fast paths
    test, is the same set for a field without a retention period and empty for a field with
    one, so that every use of a retained field takes the slow path (:func:`admit`), which
    reads the clock.
    """

    __slots__ = (
        "category",
        "closed",
        "consent_cache",
        "default",
        "on_denied",
        "own_retention",
        "pickle",
        "retention",
        "retention_us",
        "timed",
        "usable",
    )

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
    ) -> None:
        tags = list(tags)
        first = tags[0] if tags else None
        super().__init__("field", path, [FieldRef(path, first), *tags[1:]])
        self.category = category
        self.default = default
        self.on_denied: OnDenied = on_denied
        self.pickle: PickleMode = pickle
        #: the strict category's closed purpose set (with descendants), or None
        self.closed: frozenset[str] | None = None
        self.consent_cache: dict[tuple[str, ...], frozenset[str]] = {}
        #: the retention the class declares (CollectedFor(retention=...)), and the one in force:
        #: the shortest of it, the policy's fields: entry and the field's category
        self.own_retention = retention
        self.retention: timedelta | None = retention
        self.retention_us: int | None = None
        #: whether the record has a CollectedAt field
        self.timed = timed
        self.usable: frozenset[str] = frozenset()
        _fields_by_name[path] = self

    def prepare(self, compiled: CompiledPolicy | None) -> tuple[Any, ...]:
        allowed, state = super().prepare(compiled)
        closed: frozenset[str] | None = None
        if compiled is not None:
            category = self.category or compiled.field_categories.get(self.name)
            if category is not None and category not in compiled.policy.categories:
                raise PolicyError(
                    f"field {self.name} is in category {category!r}, which the policy does not "
                    "declare",
                    file=compiled.policy.source or "<python>",
                    path=f"categories.{category}",
                    fix=f"declare {category!r} under categories, or fix the field's category",
                )
            closed = compiled.strict.get(category) if category is not None else None
            if closed is not None:
                for tag in state[1]:
                    outside = [a for a in tag.collected_for if a not in closed]
                    if outside:
                        raise PolicyError(
                            f"field {self.name} is in strict category {category!r}, which may be "
                            f"used only for its listed purposes, not {', '.join(outside)}",
                            file=compiled.policy.source or "<python>",
                            path=f"categories.{category}.purposes",
                            fix="remove those purposes from the field's tags",
                        )
                allowed = allowed & closed
        return (allowed, state, closed, self._retention(compiled))

    def _retention(self, compiled: CompiledPolicy | None) -> timedelta | None:
        """The shortest of the field's own retention, its policy entry's and its category's.
        A retained field in a record without a CollectedAt field is a PolicyError."""
        periods = [self.own_retention] if self.own_retention is not None else []
        if compiled is not None:
            spec = compiled.policy.fields.get(self.name)
            if spec is not None and spec.retention is not None:
                periods.append(spec.retention)
            category = self.category or compiled.field_categories.get(self.name)
            found = compiled.policy.categories.get(category) if category else None
            if found is not None and found.retention is not None:
                periods.append(found.retention)
        if not periods:
            return None
        if not self.timed and compiled is not None:
            raise PolicyError(
                f"field {self.name} has a retention period, but its record has no collection "
                "time to count it from",
                file=compiled.policy.source or "<python>",
                path=f"fields.{self.name}",
                fix="mark a timezone-aware datetime field of the record with pg.CollectedAt, or "
                "remove the retention from the field's entry and category",
            )
        return min(periods)

    def install(self, prepared: object) -> None:
        allowed: frozenset[str]
        state: tuple[CompiledPolicy | None, tuple[Tag, ...]]
        closed: frozenset[str] | None
        retention: timedelta | None
        allowed, state, closed, retention = prepared  # type: ignore[misc]
        # everything the slow path reads first, the fast paths' set last: a reader that sees
        # the new fast set never meets an old retention
        self.closed = closed
        self.retention = retention
        self.retention_us = None if retention is None else retention // _MICROSECOND
        self.usable = allowed
        super().install((allowed if retention is None else frozenset(), state))
        self.consent_cache = {}

    def consent_allowed(self, consent: tuple[str, ...]) -> frozenset[str]:
        """The allowed set widened by a record's consent; a strict category is never widened."""
        cache = self.consent_cache
        hit = cache.get(consent)
        if hit is not None:
            return hit
        compiled, tags = self.state
        if compiled is None or self.closed is not None:
            return self.usable
        extra = tuple(p for p in consent if p in compiled.purposes)
        widened: frozenset[str] | None = None
        for tag in tags:
            tag_allowed = compiled.allowed_set(
                Tag.of((*tag.collected_for, *extra), tag.prohibited, tag.mode)
            )
            widened = tag_allowed if widened is None else widened & tag_allowed
        result = widened if widened is not None else frozenset()
        if len(cache) < _CONSENT_CACHE_LIMIT:
            cache[consent] = result
        return result

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

    def expired(self, meta: Meta | None) -> bool:
        """True iff the field has a retention period and the record is past it, counted from
        its collection time; a record that does not say when it was collected is past it."""
        period = self.retention_us
        if period is None:
            return False
        collected = meta.collected_at if meta is not None else None
        return collected is None or now_us() >= collected + period

    def permits(self, purpose: str | None, meta: Meta | None) -> bool:
        """Whether a use would be allowed, without recording anything."""
        if purpose is None:
            return False
        allowed = purpose in self.usable or (
            meta is not None
            and bool(meta.consent)
            and purpose in self.consent_allowed(meta.consent)
        )
        registry = _state.registry
        subject = subject_id(meta) if registry is not None else None
        if (
            registry is not None
            and subject is not None
            and not (allowed and subject not in registry.restricted)
        ):
            rule = Rule("allowed") if allowed else Rule("not_allowed")
            decision = Decision(allowed, rule.kind, purpose, None, rule)
            allowed = registry.narrow(decision, subject, strict=self.closed is not None).allowed
        return allowed and not self.expired(meta)


def subject_id(meta: Meta | None) -> str | None:
    """The record's subject id as the registry knows it (a str), or None."""
    if meta is None or meta.subject is None:
        return None
    subject = meta.subject if isinstance(meta.subject, str) else str(meta.subject)
    return subject if 0 < len(subject) <= 256 else None


def admit(guard: FieldGuard, meta: Meta | None, raw: object, channel: str) -> None:
    """The slow path of every guarded use: return if the use may proceed (allowed, or monitor
    mode, recorded); raise PurposeViolation in enforce mode.

    A record's consent widens its fields' tags (never a strict category's); then, for a record
    that names its subject and only when a registry is configured, the registry's rules apply
    (``Registry.narrow``: its consents widen, its suspensions of use narrow). Last, a use the
    purposes allow is denied with ``expired`` past the field's retention period.
    """
    purpose = resolve(raw)
    allowed = purpose is not None and (
        purpose in guard.usable
        or (
            meta is not None
            and bool(meta.consent)
            and purpose in guard.consent_allowed(meta.consent)
        )
    )
    registry = _state.registry
    subject = subject_id(meta) if registry is not None else None
    if (
        registry is not None
        and subject is not None
        and (subject in registry.restricted or (not allowed and subject in registry.consenting))
    ):
        rule, tag = guard.decide(purpose)
        if allowed:
            rule = Rule("allowed")
        elif rule.kind == "allowed":  # compatible, but outside a strict category's closed list
            rule = Rule("not_allowed")
        compiled = guard.state[0]
        decision = registry.narrow(
            Decision(allowed, rule.kind, purpose, compiled.version if compiled else None, rule),
            subject,
            strict=guard.closed is not None,
        )
        if decision.allowed:
            if guard.retention_us is not None and guard.expired(meta):
                _expire(guard, purpose, meta, channel)
            return
        violate(guard, purpose, decision.rule, tag, channel, subject_hash(subject))
        return
    if allowed:
        if guard.retention_us is not None and guard.expired(meta):
            _expire(guard, purpose, meta, channel)
        return
    guard.deny(raw, channel, subject_hash(meta.subject) if meta is not None else None)


def _expire(guard: FieldGuard, purpose: str | None, meta: Meta | None, channel: str) -> None:
    """Record a use past the field's retention (reason ``expired``); raise it in enforce mode."""
    _, tag = guard.decide(purpose)
    subject = subject_hash(meta.subject) if meta is not None else None
    violate(guard, purpose, Rule("expired"), tag, channel, subject)


def denied_mode(guard: FieldGuard, meta: Meta | None, raw: object) -> str | None:
    """``None`` if the use is allowed, else the mode its violation would be recorded in."""
    purpose = resolve(raw)
    if guard.permits(purpose, meta):
        return None
    _, tag = guard.decide(purpose)
    return _config.mode_for(purpose, tag.mode if tag else None)


def _unrestricted() -> bool:
    registry = _state.registry
    return registry is None or not registry.restricted


def within_retention(guard: FieldGuard, value: object, raw: object) -> bool:
    """The short path of a retained field: True iff ``value`` is this field's seal, the purpose
    may use the field, the seal's record is within the retention period, and no subject is
    restricted. Anything else (consent, the registry, an expired or untimed record) takes the
    slow path, which decides and records."""
    period = guard.retention_us
    if period is None or type(value) is not Sealed or value._f is not guard:
        return False
    meta = value._r
    at = meta.collected_at if meta is not None else None
    return at is not None and raw in guard.usable and now_us() < at + period and _unrestricted()


def open_sealed(value: Sealed, channel: str) -> Any:
    """The value inside ``value`` (and inside any seal within it), each seal checked."""
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        if not (raw in guard.allowed and _unrestricted()) and not within_retention(
            guard, inner, raw
        ):
            admit(guard, inner._r, raw, channel)
        inner = inner._v
    return inner


class Sealed:
    """A guarded value at rest. Its ``repr`` is redacted; ``==`` and ``hash`` are guarded reads;
    it refuses pickling unless its model allows it; copies stay sealed."""

    __slots__ = ("_f", "_r", "_v")

    def __init__(self, value: Any, guard: FieldGuard, meta: Meta | None = None) -> None:
        self._v = value
        self._f = guard
        self._r = meta

    def __repr__(self) -> str:
        return "<guarded>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<guarded>"

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if not isinstance(other, Sealed) and self._f.is_default(other):
            # pydantic's exclude_defaults compares a value with its field's default: the default
            # is public, and a non-default value is told apart from it without being read
            return bool(self._v == other)
        # one expression: an opened value is never a frame local while the other is checked
        return bool(
            open_sealed(self, "eq")
            == (open_sealed(other, "eq") if isinstance(other, Sealed) else other)
        )

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(open_sealed(self, "hash"))

    def __copy__(self) -> Sealed:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Sealed:
        return Sealed(copy.deepcopy(self._v, memo), self._f, self._r)

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        guard = self._f
        if guard.pickle == "purpose":
            value = open_sealed(self, "pickle")
            return (_unpickle, (value, guard.name))
        raw = _get()
        if not guard.permits(resolve(raw), self._r):
            admit(guard, self._r, raw, "pickle")
        raise SealedPickleError(
            f"field {guard.name} holds guarded data and its model refuses pickling; pickle "
            "plain data read under a purpose, or set purposeguard_pickle = 'purpose' on the model"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__reduce_ex__(2)


def _unpickle(value: Any, name: str) -> Any:
    guard = _fields_by_name.get(name)
    if guard is None:
        raise SealedPickleError(
            f"field {name} is not defined in this process; import its model before unpickling"
        )
    return Sealed(value, guard)


def seal(guard: FieldGuard, value: Any, meta: Meta | None) -> Any:
    """``value`` sealed for ``guard``. ``None`` stays ``None`` (no data, and pydantic's
    ``exclude_none`` must still see it); a value sealed for another field keeps that seal too."""
    if value is None:
        return None
    if isinstance(value, Sealed) and value._f is guard:
        if value._r is meta or value._r == meta:
            return value
        return type(value)(value._v, guard, meta)
    if isinstance(value, Sealed):
        return _Resealed(value, guard, meta)
    return Sealed(value, guard, meta)


class _Resealed(Sealed):
    """A value sealed for another field, sealed again for this one: both must allow a use.
    Its own type keeps it off the fast paths, which test ``type(value) is Sealed``."""

    __slots__ = ()


# --- dumps ---------------------------------------------------------------------------------------


def dump_sealed(value: Any) -> Any:
    """pydantic serializer for a guarded field: the value, after the check; the purpose comes
    from the purpose context only."""
    if type(value) is Sealed and _get() in value._f.allowed:
        registry = _state.registry
        if registry is None or not registry.restricted:
            return value._v
    elif type(value) is Sealed and within_retention(value._f, value, _get()):
        return value._v
    return _dump_slow(value)


class _Pending(threading.local):
    violation: PurposeViolation | None = None


#: the violation a dump raised last in this thread: pydantic wraps it (in JSON mode without a
#: ``__cause__``), and GuardedModel's dump methods raise it as itself
pending = _Pending()


def _dump_slow(value: Any) -> Any:
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        try:
            admit(guard, inner._r, raw, "dump")
        except PurposeViolation as exc:
            if guard.on_denied == "raise":
                pending.violation = exc
                raise
            return None  # redact (omit is decided earlier, by exclude_sealed)
        inner = inner._v
    return inner


def exclude_sealed(value: Any) -> bool:
    """pydantic ``exclude_if`` for models that omit denied fields: True (leave the field out,
    recording the violation) iff the use is denied in enforce mode."""
    if not isinstance(value, Sealed):
        return False
    raw = _get()
    inner: Any = value
    while isinstance(inner, Sealed):
        guard = inner._f
        if denied_mode(guard, inner._r, raw) == "enforce":
            if guard.is_default(inner._v):
                return True  # the class's public default, not the subject's data: no record
            try:
                admit(guard, inner._r, raw, "dump")
            except PurposeViolation:
                return True
        inner = inner._v
    return False


# --- which channel a read came through -----------------------------------------------------------


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
