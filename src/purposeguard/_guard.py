"""Guards: tags bound to the configured policy, the deny slow path, and accessors.

A :class:`Guard` holds the sources of its tags (tags and tagged fields) and, for the policy in
force, a frozen :class:`Binding`: the resolved tags and the allow set. The hot paths read only
``guard.allowed``. The allow path of a sync accessor is wrapt's ``enabled=`` hook: a ContextVar
read and a frozenset membership test, after which wrapt calls the function directly (no wrapper
frame, no allocation). A denial is decided, recorded and raised (enforce) or passed (monitor) in
the same hook; see ``_wrap`` for coroutines and generators.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import wrapt

from ._compile import CompiledPolicy, Tag
from ._context import _current, adrive, drive, resolve
from ._decide import Rule, decide_rule
from ._derivation import uncacheable
from ._emitter import emitter
from ._frames import caller_location
from ._ids import describe_bad_id, is_purpose_id
from ._policy import Mode
from ._state import mode_for, register, state, unregister
from .exceptions import ConfigurationError, PolicyError, PurposeViolation

__all__ = [
    "UNBOUND",
    "Binding",
    "FieldRef",
    "Guard",
    "GuardedFunction",
    "accessor",
    "field_ref",
    "guard_function",
    "guard_of",
    "violate",
]

F = TypeVar("F", bound=Callable[..., Any])
_DENIAL_CACHE_LIMIT = 256  # purposes are ids of the policy, or a few unknown ones


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A tagged field: its dotted path, the tag its class declares (if any), and the paths of
    the same field in its class's guarded bases (whose policy entries tag it too)."""

    path: str
    tag: Tag | None
    lineage: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class Binding:
    """A guard's tags bound to one compiled policy: ``allowed`` is every declared purpose the
    data may be used for (a use must comply with every tag)."""

    compiled: CompiledPolicy | None
    tags: tuple[Tag, ...]
    allowed: frozenset[str]


UNBOUND = Binding(None, (), frozenset())


class Guard:
    """What one accessor (or field, in the subclass) may be used for, kept bound to the policy.

    ``field`` and ``accessor`` are what its violation events name (one of them is None).
    """

    __slots__ = (
        "__weakref__",
        "accessor",
        "allowed",
        "binding",
        "denials",
        "field",
        "module",
        "name",
        "sources",
    )

    #: what a violation of this guard names: ``field`` (a dotted path) or ``accessor``
    names_field: ClassVar[bool] = False

    def __init__(
        self, name: str, sources: Sequence[Tag | FieldRef], module: str | None = None
    ) -> None:
        self.name = name
        #: the module that defines the guarded function (an accessor's; None for a field)
        self.module = module
        self.field: str | None = name if self.names_field else None
        self.accessor: str | None = None if self.names_field else name
        self.sources = tuple(sources)
        for source in self.sources:
            tag = source if isinstance(source, Tag) else source.tag
            for pid in (*tag.collected_for, *tag.prohibited) if tag else ():
                if not is_purpose_id(pid):
                    raise ConfigurationError(f"{self.name}: {describe_bad_id(pid)}")
        self.binding: Binding = UNBOUND
        #: the hot path reads only this: every declared purpose the data may be used for
        self.allowed: frozenset[str] = frozenset()
        #: the deny path's cache, made for one binding: purpose → (rule, deciding tag)
        self.denials: tuple[Binding, dict[str | None, tuple[Rule, Tag | None]]] = (UNBOUND, {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def tags(self, compiled: CompiledPolicy | None) -> tuple[Tag, ...]:
        """The tags in force under ``compiled``: each source's own, and for a field the
        policy's ``fields:`` entry too. Raises PolicyError for a field that has none."""
        out: list[Tag] = []
        for source in self.sources:
            if isinstance(source, Tag):
                out.append(source)
                continue
            paths = (source.path, *source.lineage) if compiled else ()
            from_policy = [compiled.field_tags.get(p) for p in paths] if compiled else []
            found = [t for t in (source.tag, *from_policy) if t is not None]
            if not found and compiled is not None:
                raise PolicyError(
                    f"{self.name} uses field {source.path}, which has no purposes",
                    file=compiled.policy.source or "<python>",
                    path=f"fields.{source.path}",
                    fix="tag it with CollectedFor(...) or list it under fields: in the policy",
                )
            out.extend(found)
        return tuple(out)

    def prepare(self, compiled: CompiledPolicy | None) -> Binding:
        """The binding under ``compiled``; raises PolicyError if a tag names a purpose it does
        not declare."""
        tags = self.tags(compiled)
        if compiled is None or not tags:
            return Binding(compiled, tags, frozenset())
        allowed: frozenset[str] | None = None
        for tag in tags:
            compiled.check_tag(tag, self.name)
            tag_allowed = compiled.allowed_set(tag)
            allowed = tag_allowed if allowed is None else allowed & tag_allowed
        return Binding(compiled, tags, allowed or frozenset())

    def install(self, prepared: object) -> None:
        assert isinstance(prepared, Binding)
        # Everything the slow path reads first, the fast set last: a reader that passes the
        # new fast test never meets the old binding on its way.
        self.denials = (prepared, {})
        self.binding = prepared
        self.allowed = prepared.allowed

    def decide(
        self, purpose: str | None, binding: Binding | None = None
    ) -> tuple[Rule, Tag | None]:
        """The deciding rule under ``binding`` (default: the one in force) and its tag. Every tag
        must allow; of the denials, the strongest reason wins (``no_purpose`` and
        ``unknown_purpose`` concern the purpose alone, then ``prohibited`` before
        ``not_allowed``), from the first tag that gives it."""
        binding = self.binding if binding is None else binding
        compiled, tags = binding.compiled, binding.tags
        if compiled is None:
            return Rule("no_policy"), (tags[0] if tags else None)
        denial: tuple[Rule, Tag] | None = None
        decided: tuple[Rule, Tag | None] = (Rule("not_allowed"), None)
        for tag in tags or (Tag(()),):  # no tags: nothing is allowed, reasons as usual
            rule = decide_rule(
                purpose, tag.collected_for, tag.prohibited, compiled.purposes, compiled.compatible
            )
            if rule.kind == "not_allowed":
                denial = denial or (rule, tag)
            elif rule.kind != "allowed":
                return rule, tag
            decided = (rule, tag)
        return denial or decided

    def deny(self, raw: object, channel: str, subject: str | None = None) -> None:
        """The slow path of an accessor, entered when the fast test failed. Returns if the use
        may proceed (allowed after all, or monitor mode); raises PurposeViolation in enforce
        mode."""
        purpose = raw if raw is None or type(raw) is str else resolve(raw)
        binding, cache = self.denials
        if purpose is not None and purpose in binding.allowed:
            return
        denial = cache.get(purpose)
        if denial is None:
            rule, tag = self.decide(purpose, binding)
            if rule.kind == "allowed":  # the tags allow what the allow set leaves out
                rule = Rule("not_allowed")
            if len(cache) < _DENIAL_CACHE_LIMIT:
                cache[purpose] = (rule, tag)
        else:
            rule, tag = denial
        violate(self, purpose, rule, tag, channel, subject, None, binding)


def violate(
    guard: Guard,
    purpose: str | None,
    rule: Rule,
    tag: Tag | None,
    channel: str,
    subject: str | None = None,
    mode: Mode | None = None,
    binding: Binding | None = None,
) -> None:
    """Record a violation of ``guard`` and raise it in enforce mode. ``mode`` overrides the
    guard's (provision decides its own); ``binding`` is the one the rule was decided under."""
    uncacheable()  # recorded on every use (monitor), or raised and perhaps caught (enforce)
    compiled = (guard.binding if binding is None else binding).compiled
    if mode is None:
        mode = mode_for(purpose, tag.mode if tag else None)
    allowed = tag.collected_for if tag else ()
    prohibited = tag.prohibited if tag else ()
    field, accessor_name = guard.field, guard.accessor
    code = caller_location(1)  # violate's own caller is purposeguard's, always
    policy_id = compiled.id if compiled else None
    policy_version = compiled.version if compiled else None
    counted = emitter.count_violation((field, accessor_name, purpose, rule.kind, code), mode)
    if counted is not None:  # not a storm nobody is reading: the event is built
        emitter.emit_violation(
            counted,
            (
                mode, rule.kind, purpose, allowed, prohibited, field, accessor_name, channel,
                policy_id, policy_version, subject, state.service, code,
            ),
        )  # fmt: skip
    if mode == "enforce":
        exc = PurposeViolation(
            purpose=purpose,
            allowed=allowed,
            prohibited=prohibited,
            field=field,
            accessor=accessor_name,
            channel=channel,
            reason=rule.kind,
            policy_id=policy_id,
            policy_version=policy_version,
        )
        kept = raised.get()
        if kept is not None:
            kept[0] = exc
        raise exc


#: Where the violation raised last is kept while code that serializes guarded records runs
#: (GuardedModel's dump methods, a request in the ASGI middleware): pydantic wraps what a
#: serializer raises (in JSON mode without a ``__cause__``), and that code raises it as itself.
#: Nothing is kept elsewhere: a violation's traceback holds frames, and their locals.
raised: ContextVar[list[PurposeViolation | None] | None] = ContextVar(
    "purposeguard.raised", default=None
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
        raise ConfigurationError(
            "collected_for and prohibited take a sequence of purpose ids, not a str"
        )
    collected_for, prohibited = tuple(collected_for), tuple(prohibited)
    if collected_for or prohibited:
        if not collected_for:
            raise ConfigurationError("prohibited= needs collected_for= (the data's own purposes)")
        sources.append(Tag.of(collected_for, prohibited, mode))
    for pair in fields:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
            raise ConfigurationError("fields takes (class, field name) pairs, not other values")
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

        wrapper = wrapt.FunctionWrapper(fn, gen_wrapper)
    elif inspect.isasyncgenfunction(target):

        def agen_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            check()
            return adrive(wrapped(*args, **kwargs), check)

        wrapper = wrapt.FunctionWrapper(fn, agen_wrapper)
    elif inspect.iscoroutinefunction(target):

        def denied(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            raw = current()

            async def deny_then_call() -> Any:  # raised when awaited, never when created
                guard.deny(raw, "accessor")
                return await wrapped(*args, **kwargs)

            return deny_then_call()

        def denied_now() -> bool:  # wrapt's ``enabled``: True sends the call to ``denied``
            return current() not in guard.allowed

        wrapper = wrapt.FunctionWrapper(fn, denied, enabled=denied_now)
    else:
        # A sync call is decided entirely in wrapt's ``enabled`` hook, which runs before wrapt
        # looks for a bound instance: allowed, or denied in monitor mode, it returns False and
        # wrapt calls the function directly; denied in enforce mode, the violation propagates.
        def decide_then_bypass() -> bool:
            raw = current()
            if raw not in guard.allowed:
                guard.deny(raw, "accessor")
            return False

        def unreachable(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return wrapped(*args, **kwargs)  # pragma: no cover - the hook never returns True

        wrapper = wrapt.FunctionWrapper(fn, unreachable, enabled=decide_then_bypass)
    # ``_self_`` attributes live on the wrapper itself; any other attribute set on a wrapt
    # proxy lands on the wrapped function and would outlive unpatch().
    setattr(wrapper, "_self_guard", guard)  # noqa: B010
    return wrapper


def guard_of(obj: object) -> Guard | None:
    """The guard of an accessor made by :func:`accessor` or :func:`guard_function`, or None."""
    try:
        guard = object.__getattribute__(obj, "_self_guard")
    except AttributeError:
        return None
    return guard if isinstance(guard, Guard) else None


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
        if isinstance(fn, functools.cached_property):
            raise ConfigurationError(
                f"@pg.accessor cannot guard cached_property {fn.func.__qualname__}: it keeps "
                "its first value on the instance, where later reads reach no guard; guard a "
                "method and cache it with @pg.cache (docs/caching.md)"
            )
        target = _underlying(fn)
        label = name or f"{target.__module__}:{target.__qualname__}"
        guard = Guard(label, sources, target.__module__)
        register(guard)
        return _wrap(fn, guard)  # type: ignore[no-any-return]

    return decorate


class GuardedFunction:
    """What :func:`guard_function` returns: the guard, and :meth:`unpatch` to take it off."""

    def __init__(self, target: str, guard: Guard) -> None:
        self.target = target
        self.guard = guard
        self._patched: tuple[Any, str, Any] | None = None
        self._removed = False

    def apply(self, module: Any) -> None:
        """Patch ``module``'s attribute now (the post-import hook calls this)."""
        if self._removed:
            return
        qualname = self.target.partition(":")[2]
        parent, attribute, original = wrapt.resolve_path(module, qualname)
        if guard_of(original) is not None:
            raise ConfigurationError(f"{self.target} is already guarded")
        wrapt.apply_patch(parent, attribute, _wrap(original, self.guard))
        self._patched = (parent, attribute, original)

    def unpatch(self) -> None:
        """Restore the original and stop guarding it (also if its module is not imported yet)."""
        self._removed = True
        if self._patched is not None:
            parent, attribute, original = self._patched
            wrapt.apply_patch(parent, attribute, original)
            self._patched = None
        unregister(self.guard)


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
    guard = Guard(target, _tags_for(collected_for, prohibited, fields, mode), module_name)
    register(guard)
    handle = GuardedFunction(target, guard)
    if module_name in sys.modules:
        handle.apply(sys.modules[module_name])
    else:
        wrapt.register_post_import_hook(handle.apply, module_name)
    return handle
