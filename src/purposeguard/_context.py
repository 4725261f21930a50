"""The active purpose: a ContextVar, ``purpose()`` and the helpers that carry it across threads."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import CodeType, FrameType, TracebackType
from typing import Any, ParamSpec, TypeVar

from ._ids import describe_bad_id, is_purpose_id
from .exceptions import ConfigurationError

__all__ = [
    "PurposeAwareExecutor",
    "current_purpose",
    "purpose",
    "run_in_executor",
    "submit",
    "with_purpose_context",
]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_GENERATOR_FLAGS = inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR


class _Scoped:
    """A purpose entered by ``with`` inside a generator frame.

    Generators share their caller's context, so a plain ContextVar value set inside one would be
    visible to the caller while the generator is suspended. The value instead remembers its frame:
    it counts only while that frame is executing; elsewhere the purpose outside it is in force.
    It is never a ``str``, so the fast path (a set membership test) always falls to the slow path.
    """

    __slots__ = ("frame", "outer", "purpose")

    def __init__(self, purpose: str, frame: FrameType, outer: object) -> None:
        self.purpose, self.frame, self.outer = purpose, frame, outer


_current: contextvars.ContextVar[object] = contextvars.ContextVar(
    "purposeguard.purpose", default=None
)


_set = _current.set
_reset = _current.reset
_getframe = sys._getframe
_last_plain_code: CodeType | None = None  # see purpose.__enter__


def resolve(value: object) -> str | None:
    """The effective purpose for a raw ContextVar value."""
    while isinstance(value, _Scoped):
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame is not value.frame:
            frame = frame.f_back
        if frame is not None:
            return value.purpose
        value = value.outer
    return value  # type: ignore[return-value]


def current_purpose() -> str | None:
    """The purpose the running code has declared, or ``None``."""
    return resolve(_current.get())


_valid_ids: set[str] = set()  # ids already checked: entering a purpose skips the regex


def _validated(name: str) -> str:
    if type(name) is str and name in _valid_ids:
        return name
    if not is_purpose_id(name):
        raise ConfigurationError(describe_bad_id(name))
    if len(_valid_ids) < 65_536:
        _valid_ids.add(name)
    return name


class purpose:
    """Declare the purpose of the code it wraps.

    As a context manager (``with`` and ``async with``) it sets the purpose for the block. As a
    decorator it sets it for each call of a function, coroutine function, generator or async
    generator; for generators only while the generator runs, never for its caller between items.
    The id is checked for its form here; whether the policy knows it is decided at each use.
    """

    __slots__ = ("_name", "_stack", "_token")

    def __init__(self, name: str) -> None:
        if type(name) is not str or name not in _valid_ids:
            _validated(name)
        self._name = name
        self._token: contextvars.Token[object] | None = None
        self._stack: list[contextvars.Token[object]] | None = None  # only when re-entered

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"purpose({self._name!r})"

    def _push(self, token: contextvars.Token[object]) -> None:
        if self._token is None:
            self._token = token
        elif self._stack is None:
            self._stack = [token]
        else:
            self._stack.append(token)

    def _pop(self) -> contextvars.Token[object]:
        if self._stack:
            return self._stack.pop()
        token, self._token = self._token, None
        assert token is not None, "purpose.__exit__ without __enter__"
        return token

    def __enter__(self) -> str:
        # Only a generator's frame needs a _Scoped value; the code object of the last caller
        # found not to be one is remembered, so a call site that enters a purpose on every
        # request reads one attribute of its frame, not two, and tests no flags.
        global _last_plain_code
        code = _getframe(1).f_code
        if code is not _last_plain_code:
            if code.co_flags & _GENERATOR_FLAGS:
                self._push(_set(_Scoped(self._name, _getframe(1), _current.get())))
                return self._name
            _last_plain_code = code
        if self._token is None:  # the common case, inline: no re-entry
            self._token = _set(self._name)
        else:
            self._push(_set(self._name))
        return self._name

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stack:
            token = self._stack.pop()
        else:
            token, self._token = self._token, None  # type: ignore[assignment]
        try:
            _reset(token)
        except ValueError:  # a generator resumed in another context: restore what it replaced
            old = token.old_value
            _set(None if old is contextvars.Token.MISSING else old)

    async def __aenter__(self) -> str:
        self._push(_set(self._name))
        return self._name

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        _reset(self._pop())

    def __call__(self, fn: F) -> F:
        name = self._name
        if inspect.isasyncgenfunction(fn):
            return _decorate_async_gen(fn, name)  # type: ignore[return-value]
        if inspect.isgeneratorfunction(fn):
            return _decorate_gen(fn, name)  # type: ignore[return-value]
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                token = _current.set(name)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _current.reset(token)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            token = _current.set(name)
            try:
                return fn(*args, **kwargs)
            finally:
                _current.reset(token)

        return run  # type: ignore[return-value]


def _decorate_gen(fn: Callable[..., Generator[Any, Any, Any]], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return (
            yield from drive(
                fn(*args, **kwargs), lambda: _current.set(name), _current.reset, close_inside=True
            )
        )

    return run


def _decorate_async_gen(
    fn: Callable[..., AsyncGenerator[Any, Any]], name: str
) -> Callable[..., Any]:
    # An ``async def`` with ``yield`` so that the result stays an async generator function
    # (frameworks such as FastAPI look for one); it forwards asend/athrow by hand, as there is
    # no ``yield from`` for async generators.
    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = adrive(
            fn(*args, **kwargs), lambda: _current.set(name), _current.reset, close_inside=True
        )
        try:
            item = await agen.__anext__()
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(sent)
        except StopAsyncIteration:
            return
        finally:
            await agen.aclose()

    return run


def drive(
    gen: Generator[Any, Any, Any],
    before: Callable[[], Any],
    after: Callable[[Any], Any] = lambda _: None,
    *,
    close_inside: bool = False,
) -> Generator[Any, Any, Any]:
    """Delegate to ``gen`` like ``yield from`` (PEP 380), calling ``before()`` before every
    resumption and ``after(state)`` when the step ends. Used to scope a purpose to a generator's
    own steps, and to check a guarded generator's purpose at every step. With ``close_inside``
    the generator's clean-up (``close()``) runs inside ``before``/``after`` too."""
    send: Any = None
    exc: BaseException | None = None
    try:
        while True:
            state = before()
            try:
                item = gen.throw(exc) if exc is not None else gen.send(send)
            except StopIteration as stop:
                return stop.value
            finally:
                after(state)
            exc = None
            try:
                send = yield item
            except GeneratorExit:
                raise
            except BaseException as thrown:
                exc = thrown
    finally:
        state = before() if close_inside else None
        try:
            gen.close()
        finally:
            if close_inside:
                after(state)


async def adrive(
    agen: AsyncGenerator[Any, Any],
    before: Callable[[], Any],
    after: Callable[[Any], Any] = lambda _: None,
    *,
    close_inside: bool = False,
) -> AsyncGenerator[Any, Any]:
    """The async-generator form of :func:`drive` (``asend``/``athrow`` semantics kept)."""
    send: Any = None
    exc: BaseException | None = None
    try:
        while True:
            state = before()
            try:
                item = await (agen.athrow(exc) if exc is not None else agen.asend(send))
            except StopAsyncIteration:
                return
            finally:
                after(state)
            exc = None
            try:
                send = yield item
            except GeneratorExit:
                raise
            except BaseException as thrown:
                exc = thrown
    finally:
        state = before() if close_inside else None
        try:
            await agen.aclose()
        finally:
            if close_inside:
                after(state)


# --- carrying the purpose into thread pools ------------------------------------------------------
# ThreadPoolExecutor.submit and loop.run_in_executor run the callable in the worker's own context,
# so the caller's purpose is lost there. Each helper runs the callable in a copy of the caller's
# context; the worker's context is never modified, so nothing stays behind for its next task.


def with_purpose_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to a copy of the current context (purpose included), for any executor."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


def submit(executor: Executor, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> Future[R]:
    """``executor.submit`` that keeps the caller's purpose for ``fn``."""
    ctx = contextvars.copy_context()
    return executor.submit(ctx.run, fn, *args, **kwargs)  # type: ignore[arg-type]


def run_in_executor(executor: Executor | None, fn: Callable[..., R], *args: Any) -> Awaitable[R]:
    """``loop.run_in_executor`` that keeps the caller's purpose for ``fn``."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(executor, contextvars.copy_context().run, fn, *args)


class PurposeAwareExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose ``submit`` (and so ``map``) keeps the caller's purpose."""

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)  # type: ignore[arg-type]
