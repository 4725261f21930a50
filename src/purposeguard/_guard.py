"""Guards: the allow fast path, the deny slow path, ``accessor()``, ``guard_function()``,
``check()`` and ``explain()``.

The allow path of a sync accessor is wrapt's ``enabled=`` hook: a ContextVar read and a
frozenset membership test, after which wrapt calls the function directly (no wrapper frame, no
allocation). A denial is decided, recorded and raised (enforce) or passed (monitor) in the same
hook; see ``_wrap`` for coroutines and generators.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import wrapt

from . import _config
from ._compile import CompiledPolicy, Tag
from ._context import _current, adrive, drive, resolve
from ._decide import Rule, decide_rule
from ._events import SCHEMA, VIOLATION, caller_location, emitter, now_iso
from ._ids import is_purpose_id
from ._policy import Mode
from .exceptions import ConfigurationError, PolicyError, PurposeViolation

__all__ = [
    "FieldRef",
    "Guard",
    "GuardedFunction",
    "accessor",
    "field_ref",
    "guard_function",
    "violate",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A tagged field: its dotted path and the tag its class declares (if any)."""

    path: str
    tag: Tag | None


def field_ref(owner: Any, name: str) -> FieldRef:
    """Resolve ``(Model, "field")`` (or a dotted path) to a :class:`FieldRef`."""
    if isinstance(owner, str):
        return FieldRef(f"{owner}.{name}", None)
    if not isinstance(owner, type):
        raise ConfigurationError(
            f"fields take (class, field name) pairs, not {type(owner).__name__}"
        )
    table = getattr(owner, "__purposeguard_fields__", None) or {}
    path = f"{owner.__module__}.{owner.__qualname__}.{name}"
    return FieldRef(path, table.get(name))


class Guard:
    """What one field or accessor may be used for, kept bound to the configured policy."""

    __slots__ = (
        "__weakref__",
        "allowed",
        "denials",
        "denials_for",
        "kind",
        "name",
        "sources",
        "state",
    )

    def __init__(self, kind: str, name: str, sources: Sequence[Tag | FieldRef]) -> None:
        self.kind = kind  # "field" or "accessor"
        self.name = name
        self.sources = tuple(sources)
        #: the hot path reads only this: every declared purpose the data may be used for
        self.allowed: frozenset[str] = frozenset()
        self.state: tuple[CompiledPolicy | None, tuple[Tag, ...]] = (None, ())
        #: the deny path's cache: purpose → (rule, tag), valid for the state it was made under
        self.denials: dict[str | None, tuple[Rule, Tag | None]] = {}
        self.denials_for: object = None
        for source in self.sources:
            tag = source if isinstance(source, Tag) else source.tag
            for pid in (*tag.collected_for, *tag.prohibited) if tag else ():
                if not is_purpose_id(pid):
                    raise ConfigurationError(f"{kind} {name}: {pid!r} is not a purpose id")

    def __repr__(self) -> str:
        return f"<Guard {self.kind} {self.name}>"

    def tags(self, compiled: CompiledPolicy | None) -> tuple[Tag, ...]:
        out: list[Tag] = []
        for source in self.sources:
            if isinstance(source, Tag):
                out.append(source)
                continue
            from_policy = compiled.field_tags.get(source.path) if compiled else None
            found = [t for t in (source.tag, from_policy) if t is not None]
            if not found and compiled is not None:
                raise PolicyError(
                    f"{self.kind} {self.name} uses field {source.path}, which has no purposes",
                    file=compiled.policy.source or "<python>",
                    path=f"fields.{source.path}",
                    fix="tag it with CollectedFor(...) or list it under fields: in the policy",
                )
            out.extend(found)
        return tuple(out)

    def prepare(self, compiled: CompiledPolicy | None) -> tuple[Any, ...]:
        tags = self.tags(compiled)
        if compiled is None or not tags:
            return (frozenset(), (compiled, tags))
        allowed: frozenset[str] | None = None
        for tag in tags:
            compiled.check_tag(tag, f"{self.kind} {self.name}")
            tag_allowed = compiled.allowed_set(tag)
            allowed = tag_allowed if allowed is None else allowed & tag_allowed
        return (allowed, (compiled, tags))

    def install(self, prepared: object) -> None:
        allowed: frozenset[str]
        state: tuple[CompiledPolicy | None, tuple[Tag, ...]]
        allowed, state = prepared  # type: ignore[misc]
        # The fast set first: a reader between the two stores then denies exactly what the new
        # policy denies (its slow path re-checks this set before deciding with the old state).
        self.allowed = allowed
        self.state = state

    def decide(self, purpose: str | None) -> tuple[Rule, Tag | None]:
        """The deciding rule: the first tag that denies, else the allowing rule."""
        compiled, tags = self.state
        if compiled is None:
            return Rule("no_policy"), (tags[0] if tags else None)
        rule = Rule("allowed")
        for tag in tags or (Tag(()),):  # no tags: nothing is allowed, reasons as usual
            rule = decide_rule(
                purpose, tag.collected_for, tag.prohibited, compiled.purposes, compiled.compatible
            )
            if rule.kind != "allowed":
                return rule, tag
        return rule, tag

    def deny(self, raw: object, channel: str, subject: str | None = None) -> None:
        """The slow path, entered when the fast test failed. Returns if the use may proceed
        (allowed after all, or monitor mode); raises PurposeViolation in enforce mode."""
        purpose = raw if raw is None or type(raw) is str else resolve(raw)
        if purpose is not None and purpose in self.allowed:
            return
        state = self.state
        denial = self.denials.get(purpose) if self.denials_for is state else None
        if denial is None:
            rule, tag = self.decide(purpose)
            if rule.kind == "allowed":  # tags and allow set from different policies mid-swap
                rule = Rule("not_allowed")
            if self.denials_for is not state:
                self.denials, self.denials_for = {}, state
            if len(self.denials) < 256:  # purposes are ids of the policy, or a few unknown ones
                self.denials[purpose] = (rule, tag)
        else:
            rule, tag = denial
        violate(self, purpose, rule, tag, channel, subject)


def subject_hash(subject_id: object) -> str | None:
    """The keyed hash (HMAC-SHA256, configured ``subject_key``) of a subject id; never the id."""
    key = _config.state.subject_key
    if key is None or subject_id is None:
        return None
    return "hmac-sha256:" + hmac.new(key, str(subject_id).encode(), hashlib.sha256).hexdigest()[:32]


def _event(
    mode: str,
    reason: str,
    purpose: str | None,
    allowed: tuple[str, ...],
    prohibited: tuple[str, ...],
    field: str | None,
    accessor_name: str | None,
    channel: str,
    compiled: CompiledPolicy | None,
    subject: str | None,
    code: str | None,
) -> dict[str, Any]:
    """A violation event (DESIGN §5): allowlisted keys only, never a value."""
    return {
        "event": VIOLATION,
        "schema": SCHEMA,
        "ts": now_iso(),
        "decision": "deny",
        "mode": mode,
        "enforced": mode == "enforce",
        "reason": reason,
        "purpose": purpose,
        "allowed": list(allowed),
        "prohibited": list(prohibited),
        "field": field,
        "accessor": accessor_name,
        "channel": channel,
        "policy_id": compiled.id if compiled else None,
        "policy_version": compiled.version if compiled else None,
        "subject": subject,
        "trace_id": None,
        "span_id": None,
        "service": emitter.service,
        "code": code,
    }


def violate(
    guard: Guard,
    purpose: str | None,
    rule: Rule,
    tag: Tag | None,
    channel: str,
    subject: str | None = None,
    *,
    mode: Mode | None = None,
) -> None:
    """Record a violation of ``guard`` and raise it in enforce mode."""
    compiled = guard.state[0]
    if mode is None:
        mode = _config.mode_for(purpose, tag.mode if tag else None)
    allowed = tag.collected_for if tag else ()
    prohibited = tag.prohibited if tag else ()
    field, accessor_name = (guard.name, None) if guard.kind == "field" else (None, guard.name)
    code = caller_location()
    emitter.violation(
        (field, accessor_name, purpose, rule.kind, code),
        mode,
        _event,
        (
            mode,
            rule.kind,
            purpose,
            allowed,
            prohibited,
            field,
            accessor_name,
            channel,
            compiled,
            subject,
            code,
        ),
    )
    if mode == "enforce":
        raise PurposeViolation(
            purpose=purpose,
            allowed=allowed,
            prohibited=prohibited,
            field=field,
            accessor=accessor_name,
            channel=channel,
            reason=rule.kind,
            policy_id=compiled.id if compiled else None,
            policy_version=compiled.version if compiled else None,
        )


# --- accessors -----------------------------------------------------------------------------------


def _tags_for(
    collected_for: Iterable[str],
    prohibited: Iterable[str],
    fields: Iterable[tuple[Any, str]],
    mode: Mode | None,
) -> list[Tag | FieldRef]:
    sources: list[Tag | FieldRef] = []
    if isinstance(collected_for, str) or isinstance(prohibited, str):
        raise TypeError("collected_for and prohibited take a sequence of purpose ids, not a str")
    collected_for, prohibited = tuple(collected_for), tuple(prohibited)
    if collected_for or prohibited:
        if not collected_for:
            raise ConfigurationError("prohibited= needs collected_for= (the data's own purposes)")
        sources.append(Tag.of(collected_for, prohibited, mode))
    for pair in fields:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
            raise ConfigurationError(f"fields takes (class, field name) pairs, not {pair!r}")
        sources.append(field_ref(*pair))
    if not sources:
        raise ConfigurationError("an accessor needs collected_for= or fields=")
    return sources


def _underlying(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn


def _wrap(fn: Any, guard: Guard) -> Any:
    """Wrap ``fn`` (function, method, classmethod, staticmethod; sync, async or generator)."""
    target = _underlying(fn)
    current = _current.get

    def check() -> None:
        raw = current()
        if raw not in guard.allowed:
            guard.deny(raw, "accessor")

    if inspect.isgeneratorfunction(target):

        def gen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            check()
            return drive(wrapped(*args, **kwargs), check)

        return wrapt.FunctionWrapper(fn, gen_wrapper)

    if inspect.isasyncgenfunction(target):

        def agen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            check()
            return adrive(wrapped(*args, **kwargs), check)

        return wrapt.FunctionWrapper(fn, agen_wrapper)

    if inspect.iscoroutinefunction(target):

        def denied(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            raw = current()

            async def deny_then_call() -> Any:  # raised when awaited, never when created
                guard.deny(raw, "accessor")
                return await wrapped(*args, **kwargs)

            return deny_then_call()

        def allowed_now() -> bool:  # True sends the call to ``denied``
            return current() not in guard.allowed

        return wrapt.FunctionWrapper(fn, denied, enabled=allowed_now)

    # A sync call is decided entirely in wrapt's ``enabled`` hook, which runs before wrapt looks
    # for a bound instance: allowed, or denied in monitor mode, it returns False and wrapt calls
    # the function directly; denied in enforce mode, the violation propagates from here.
    def decide() -> bool:
        raw = current()
        if raw not in guard.allowed:
            guard.deny(raw, "accessor")
        return False

    def unreachable(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped(*args, **kwargs)  # pragma: no cover - ``decide`` never returns True

    return wrapt.FunctionWrapper(fn, unreachable, enabled=decide)


def accessor(
    *,
    collected_for: Iterable[str] = (),
    prohibited: Iterable[str] = (),
    fields: Iterable[tuple[Any, str]] = (),
    mode: Mode | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Guard a function that returns personal data.

    ``collected_for``/``prohibited`` are the purposes of the data it returns; ``fields`` inherits
    the tags of ``(Model, "field")`` pairs. A call must comply with every tag. ``mode`` overrides
    the mode for this accessor. Works on functions, methods, classmethods, staticmethods, async
    functions, generators and async generators; generators are checked at creation and at every
    step. Raises ConfigurationError/PolicyError here if a tag is malformed or names a purpose the
    configured policy does not declare.
    """
    sources = _tags_for(collected_for, prohibited, fields, mode)

    def decorate(fn: F) -> F:
        target = _underlying(fn)
        label = name or f"{target.__module__}:{target.__qualname__}"
        guard = Guard("accessor", label, sources)
        _config.register(guard)
        wrapped = _wrap(fn, guard)
        wrapped.__purposeguard_guard__ = guard
        return wrapped  # type: ignore[no-any-return]

    return decorate


class GuardedFunction:
    """What :func:`guard_function` returns: the guard, and :meth:`unpatch` to take it off."""

    def __init__(self, target: str, guard: Guard) -> None:
        self.target = target
        self.guard = guard
        self._patched: tuple[Any, str, Any] | None = None
        self._removed = False

    def apply(self, module: Any) -> None:
        if self._removed:
            return
        qualname = self.target.partition(":")[2]
        parent, attribute, original = wrapt.resolve_path(module, qualname)
        if getattr(original, "__purposeguard_guard__", None) is not None:
            raise ConfigurationError(f"{self.target} is already guarded")
        wrapped = _wrap(original, self.guard)
        wrapped.__purposeguard_guard__ = self.guard
        wrapt.apply_patch(parent, attribute, wrapped)
        self._patched = (parent, attribute, original)

    def unpatch(self) -> None:
        """Restore the original and stop guarding it (also if its module is not imported yet)."""
        self._removed = True
        if self._patched is not None:
            parent, attribute, original = self._patched
            wrapt.apply_patch(parent, attribute, original)
            self._patched = None
        _config.unregister(self.guard)


def guard_function(
    target: str,
    *,
    collected_for: Iterable[str] = (),
    prohibited: Iterable[str] = (),
    fields: Iterable[tuple[Any, str]] = (),
    mode: Mode | None = None,
) -> GuardedFunction:
    """Guard ``"pkg.module:qualname"`` in code you don't own.

    Patches the module attribute now if the module is imported, else as soon as it is. Code that
    already holds a reference to the original (``from pkg.module import fn`` before this call)
    keeps calling the original: install guards at start-up, before such imports. Returns a handle
    whose ``unpatch()`` takes the guard off again.
    """
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ConfigurationError(f"guard_function takes 'pkg.module:qualname', not {target!r}")
    guard = Guard("accessor", target, _tags_for(collected_for, prohibited, fields, mode))
    _config.register(guard)
    handle = GuardedFunction(target, guard)
    if module_name in sys.modules:
        handle.apply(sys.modules[module_name])
    else:
        wrapt.register_post_import_hook(handle.apply, module_name)
    return handle
