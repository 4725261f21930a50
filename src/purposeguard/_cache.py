"""``pg.cache``, a cache that serves a value only where computing it again would be allowed; and
the search for functools caches that serve a guarded accessor unchecked.

A ``functools.cache`` above ``@pg.accessor`` fills on the first allowed call, then answers every
purpose (or none) without a check. ``pg.cache`` keeps each value under

    (the active purpose, the stamp, the arguments)

where the stamp names what every fast-path decision reads besides the purpose: the compiled policy
(its generation is never reused), the subject registry and its set of restricted subjects. A new
stamp empties the cache. A value is kept only if nothing decided while it was computed depended on
more than that (:mod:`purposeguard._derivation`: no violation, consent, restriction, clock or
provision), so a hit is a value the same call just computed, under the same purpose, policy and
registry, with every check allowing it. When the cached function is an accessor, each hit also
goes through the accessor's check, as a call would.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sys
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, Concatenate, Final, NamedTuple, ParamSpec, Protocol, TypeVar, overload

import wrapt

from ._context import _current, resolve
from ._derivation import begin, end
from ._guard import Guard, guard_of
from ._state import SubjectRestrictions, guards, state
from .exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MAXSIZE",
    "CacheInfo",
    "Cached",
    "cache",
    "check_accessor_modules",
    "unchecked_caches",
]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")

#: ``pg.cache``'s default ``maxsize``, as ``functools.lru_cache``'s
DEFAULT_MAXSIZE: Final = 128
_MISSING: Final = object()
_CHAIN_LIMIT = 64  # __wrapped__ links followed before giving up (a cycle, or a pathological chain)
_LRU: Final = functools._lru_cache_wrapper

#: what a cache's values were computed under: compiled policy, registry, its restricted set, epoch
_Stamp = tuple[object, SubjectRestrictions | None, object, int]


class CacheInfo(NamedTuple):
    """What ``cache_info()`` returns: the fields of ``functools``' own."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class Cached(Protocol[P, R_co]):
    """A function decorated with :func:`cache`: called like it, plus ``cache_info()`` and
    ``cache_clear()``."""

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_info(self) -> CacheInfo: ...
    def cache_clear(self) -> None: ...
    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Cached[P, R_co]: ...
    @overload
    def __get__(
        self: Cached[Concatenate[T, Q], R_co], instance: T, owner: type[Any] | None = None
    ) -> Cached[Q, R_co]: ...


class _Store:
    """One cached function's values, least recently used first, the stamp they were computed
    under and the counts. Reads take no lock (a dict read and a move to the end, each one step
    under the GIL; a key evicted in between is simply not moved); writes hold ``lock``."""

    __slots__ = ("entries", "hits", "lock", "maxsize", "misses", "stamp", "typed")

    def __init__(self, maxsize: int, typed: bool) -> None:
        self.entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()
        self.maxsize = maxsize
        self.typed = typed
        self.hits = 0
        self.misses = 0
        self.stamp: _Stamp = (None, None, None, 0)

    def current(self) -> _Stamp:
        """The stamp of the state in force, renewed (and the cache emptied) if it changed."""
        stamp = self.stamp
        registry = state.registry
        if (
            stamp[0] is state.compiled
            and stamp[1] is registry
            and (registry is None or stamp[2] is registry.restricted)
        ):
            return stamp
        return self.renew()

    def renew(self) -> _Stamp:
        """A new stamp for the state in force (unless another thread just made it), the cache
        emptied."""
        with self.lock:
            compiled, registry = state.compiled, state.registry
            restricted = None if registry is None else registry.restricted
            stamp = self.stamp
            if stamp[0] is not compiled or stamp[1] is not registry or stamp[2] is not restricted:
                self.stamp = (compiled, registry, restricted, stamp[3] + 1)
                self.entries.clear()
            return self.stamp

    def key(
        self, stamp: _Stamp, purpose: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, ...]:
        """The key of a call: the stamp's epoch, the purpose, the arguments (and their types)."""
        key: tuple[Any, ...] = (
            (stamp[3], purpose, args, tuple(kwargs.items()))
            if kwargs
            else (stamp[3], purpose, args)
        )
        if self.typed:
            key += (tuple(map(type, args)), tuple(map(type, kwargs.values())))
        return key

    def get(self, key: tuple[Any, ...]) -> Any:
        """The value kept under ``key`` (now the most recently used), or ``_MISSING``. Raises
        TypeError for an unhashable argument, as functools does."""
        value = self.entries.get(key, _MISSING)
        if value is _MISSING:
            self.misses += 1
            return value
        with contextlib.suppress(KeyError):  # evicted by another thread since
            self.entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, stamp: _Stamp, key: tuple[Any, ...], value: Any) -> None:
        """Keep ``value`` if the state it was computed under is still in force."""
        if self.current() is not stamp:
            return
        with self.lock:
            if self.stamp is not stamp:
                return
            self.entries[key] = value
            self.entries.move_to_end(key)
            if len(self.entries) > self.maxsize:
                self.entries.popitem(last=False)

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self.entries))

    def clear(self) -> None:
        """Forget every value and the counts; a value being computed now is not kept either."""
        with self.lock:
            self.entries.clear()
            self.hits = self.misses = 0
            compiled, registry, restricted, epoch = self.stamp
            self.stamp = (compiled, registry, restricted, epoch + 1)


def _chain(fn: object) -> Iterator[object]:
    """``fn`` and what it wraps, link by link (``__wrapped__``, a classmethod's function).
    Types are read with ``type()``, never ``isinstance``: a proxy may lie or raise."""
    for _ in range(_CHAIN_LIMIT):
        if fn is None:
            return
        yield fn
        if issubclass(type(fn), classmethod | staticmethod):
            fn = fn.__func__  # type: ignore[attr-defined]
            continue
        try:
            fn = getattr(fn, "__wrapped__", None)
        except Exception:  # an odd object's __getattr__: not a wrapper we can follow
            return


def _accessor_guard(fn: object) -> Guard | None:
    """The guard of ``fn`` if it is an accessor, bound to an instance or not."""
    guard = guard_of(fn)
    if guard is None and issubclass(type(fn), wrapt.BoundFunctionWrapper):
        guard = guard_of(fn._self_parent)  # type: ignore[attr-defined]
    return guard


def _reaches_accessor(fn: object) -> bool:
    return any(_accessor_guard(link) is not None for link in _chain(fn))


def _name(fn: object) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', None) or type(fn).__name__}"


def _refuse_unsupported(fn: object) -> None:
    links = list(_chain(fn))
    for link in links:
        if issubclass(type(link), classmethod | staticmethod):
            kind = type(link).__name__
            raise ConfigurationError(
                f"pg.cache goes below @{kind}, not above it: put @{kind} on top of @pg.cache"
            )
    if not callable(fn):
        raise ConfigurationError(f"pg.cache caches functions, not {type(fn).__name__} objects")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"pg.cache cannot cache generator function {_name(fn)}: a generator is used up "
            "once iterated; cache a function that returns a list instead"
        )
    for link in links:
        if type(link) is _LRU and _reaches_accessor(link.__wrapped__):
            raise ConfigurationError(
                f"{_name(fn)} wraps a functools cache around a guarded accessor, which serves "
                "every purpose without a check: replace that cache with pg.cache"
            )


@overload
def cache(fn: Callable[P, R], /) -> Cached[P, R]: ...
@overload
def cache(
    *, maxsize: int = DEFAULT_MAXSIZE, typed: bool = False
) -> Callable[[Callable[P, R]], Cached[P, R]]: ...
def cache(
    fn: Callable[..., Any] | None = None, /, *, maxsize: int = DEFAULT_MAXSIZE, typed: bool = False
) -> Any:
    """Cache a function's results per purpose, never serving one where a call would be denied.

    ``@pg.cache`` or ``@pg.cache(maxsize=128, typed=False)``, on a function, method or coroutine
    function, above or below ``@pg.accessor``. A value is kept under the active purpose, the policy
    in force, the subject registry's restricted subjects and the arguments (which must be
    hashable, as for ``functools.lru_cache``; ``typed=True`` keeps ``1`` and ``1.0`` apart), at
    most ``maxsize`` of them, least recently used out first; a new policy or a change of the
    restricted subjects empties it. A value whose computation recorded a violation or depended on
    a record's consent, a subject's restriction, a retention period or a provision is returned but
    not kept. On an accessor, every hit goes through the accessor's check. For a coroutine
    function the purpose is the one in force where the call is awaited (an accessor's own check
    also sees the one it was called under). ``cache_info()`` and ``cache_clear()`` work as in
    functools. Thread-safe; two calls that miss at once may both compute. Raises
    ConfigurationError for a bad ``maxsize`` or ``typed``, a generator function, a classmethod or
    staticmethod object (put the cache below them), a non-callable, and a functools cache around
    an accessor. See docs/caching.md.
    """
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
        raise ConfigurationError(
            f"pg.cache(maxsize=) takes a whole number of values, at least 1, not {maxsize!r}; "
            "a cache of personal data is never unbounded"
        )
    if not isinstance(typed, bool):
        raise ConfigurationError(f"pg.cache(typed=) takes True or False, not {typed!r}")
    if fn is None:
        return lambda f: _decorate(f, _Store(maxsize, typed))
    return _decorate(fn, _Store(maxsize, typed))


def _decorate(fn: Callable[..., Any], store: _Store) -> Any:
    _refuse_unsupported(fn)
    guard = _accessor_guard(fn)
    if inspect.iscoroutinefunction(fn):
        return _cache_coroutine_function(fn, store, guard)
    current = _current.get
    entries, typed = store.entries, store.typed
    look_up, touch = entries.get, entries.move_to_end

    @functools.wraps(fn)
    def cached(*args: Any, **kwargs: Any) -> Any:
        # store.current(), store.key() and store.get() inline: a hit is this function alone
        raw = current()
        stamp = store.stamp
        registry = state.registry
        if (
            stamp[0] is not state.compiled
            or stamp[1] is not registry
            or (registry is not None and stamp[2] is not registry.restricted)
        ):
            stamp = store.renew()
        purpose = raw if raw is None or type(raw) is str else resolve(raw)
        key: tuple[Any, ...] = (
            (stamp[3], purpose, args, tuple(kwargs.items()))
            if kwargs
            else (stamp[3], purpose, args)
        )
        if typed:
            key += (tuple(map(type, args)), tuple(map(type, kwargs.values())))
        value = look_up(key, _MISSING)
        if value is not _MISSING:
            try:
                touch(key)
            except KeyError:  # evicted by another thread since
                pass
            store.hits += 1
            if guard is not None and raw not in guard.allowed:
                guard.deny(raw, "accessor")  # the accessor's own check, as a call would run it
            return value
        store.misses += 1
        derivation, token = begin()
        try:
            value = fn(*args, **kwargs)
        finally:
            end(token)
        if derivation.kept:
            store.put(stamp, key, value)
        return value

    cached.cache_info = store.info  # type: ignore[attr-defined]
    cached.cache_clear = store.clear  # type: ignore[attr-defined]
    return cached


class _BoundCachedCoroutineFunction(wrapt.BoundFunctionWrapper[..., Any]):
    def cache_info(self) -> CacheInfo:
        return self._self_parent.cache_info()  # type: ignore[no-any-return]

    def cache_clear(self) -> None:
        self._self_parent.cache_clear()


class _CachedCoroutineFunction(wrapt.FunctionWrapper[..., Any]):
    """A cached coroutine function: a wrapt proxy, so that ``inspect`` still sees one."""

    __bound_function_wrapper__ = _BoundCachedCoroutineFunction
    _self_store: _Store

    def cache_info(self) -> CacheInfo:
        return self._self_store.info()

    def cache_clear(self) -> None:
        self._self_store.clear()


def _cache_coroutine_function(
    fn: Callable[..., Awaitable[Any]], store: _Store, guard: Guard | None
) -> Any:
    current = _current.get

    def call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return run(current(), wrapped, instance, args, kwargs)

    async def run(called: object, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        raw = current()  # the body runs here, where the call is awaited
        # an accessor decides by the purpose it was called under; the one awaiting is checked below
        if guard is not None and called != raw and called not in guard.allowed:
            guard.deny(called, "accessor")
        purpose = raw if raw is None or type(raw) is str else resolve(raw)
        stamp = store.current()
        key = store.key(stamp, purpose, args if instance is None else (instance, *args), kwargs)
        value = store.get(key)
        if value is not _MISSING:
            if guard is not None and raw not in guard.allowed:
                guard.deny(raw, "accessor")
            return value
        derivation, token = begin()
        try:
            value = await wrapped(*args, **kwargs)
        finally:
            end(token)
        if derivation.kept:
            store.put(stamp, key, value)
        return value

    wrapper = _CachedCoroutineFunction(fn, call)
    wrapper._self_store = store
    return wrapper


# --- functools caches around accessors -----------------------------------------------------------


def _found_in(value: object, where: str, found: list[str], seen: set[int]) -> None:
    """Add ``where`` to ``found`` if ``value`` is a functools cache around a guarded accessor; look
    inside classes (their methods, properties and nested classes). Never raises: an object that
    fails to be looked at is no functools cache."""
    try:
        if id(value) in seen or _accessor_guard(value) is not None:
            return  # an accessor itself (a cache below it is checked on every call)
        seen.add(id(value))
        kind = type(value)  # never isinstance: a proxy in a module (Flask's request) may raise
        if issubclass(kind, classmethod | staticmethod):
            _found_in(value.__func__, where, found, seen)  # type: ignore[attr-defined]
        elif issubclass(kind, property):
            _found_in(value.fget, where, found, seen)  # type: ignore[attr-defined]
        elif kind is _LRU:
            if _reaches_accessor(getattr(value, "__wrapped__", None)):
                found.append(where)
        elif issubclass(kind, functools.cached_property):
            if _reaches_accessor(value.func):  # type: ignore[attr-defined]
                found.append(where)
        elif issubclass(kind, type):
            for name, member in list(vars(value).items()):
                _found_in(member, f"{where}.{name}", found, seen)
    except Exception:
        return


def unchecked_caches(modules: Iterable[ModuleType] | None = None) -> list[str]:
    """The functools caches (``lru_cache``, ``cache``, ``cached_property``) around a guarded
    accessor in ``modules`` (default: every module loaded), as ``module.name`` paths: module
    globals and the members of classes found there. A cache that calls an accessor without
    wrapping it, or that is held anywhere else (a closure, an instance), is not seen."""
    found: list[str] = []
    seen: set[int] = set()
    for module in list(sys.modules.values()) if modules is None else modules:
        try:  # the module's own dict: a lazy module's __getattribute__ would import it
            members = dict(object.__getattribute__(module, "__dict__"))
        except (AttributeError, TypeError):  # a stand-in object in sys.modules
            continue
        module_name = members.get("__name__")
        if not isinstance(module_name, str):
            continue
        for name, value in members.items():
            if issubclass(type(value), type) and vars(value).get("__module__") != module_name:
                continue  # imported: looked at in its own module
            _found_in(value, f"{module_name}.{name}", found, seen)
    return sorted(set(found))


def check_accessor_modules() -> None:
    """Raise ConfigurationError if a module that defines an accessor holds a functools cache
    around one (``configure(policy=)`` and ``reload_policy()`` ask, before anything changes)."""
    names = {g.module for g in guards() if isinstance(g, Guard) and g.module}
    found = unchecked_caches(sys.modules[n] for n in sorted(names) if n in sys.modules)
    if found:
        raise ConfigurationError(
            f"functools caches around guarded accessors serve every purpose without a check: "
            f"{', '.join(found)}; cache with @pg.cache instead, or put the functools cache "
            "below @pg.accessor (docs/caching.md)"
        )
