"""The purpose context: scoping, decorators, generators, tasks and thread pools."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import purposeguard as pg


def test_context_manager_sets_and_restores() -> None:
    assert pg.current_purpose() is None
    with pg.purpose("recruitment") as name:
        assert name == "recruitment"
        with pg.purpose("recruitment.selection"):
            assert pg.current_purpose() == "recruitment.selection"
        assert pg.current_purpose() == "recruitment"
    assert pg.current_purpose() is None


def test_one_purpose_object_can_be_reentered() -> None:
    p = pg.purpose("inquiry")
    with p, p:
        assert pg.current_purpose() == "inquiry"
    assert pg.current_purpose() is None


@pytest.mark.parametrize("bad", ["", "Recruitment", "a..b", "a.", "1a", "a-b", "x" * 129, "日本"])
def test_malformed_purpose_is_rejected_at_once(bad: str) -> None:
    with pytest.raises(pg.ConfigurationError, match="purpose id"):
        pg.purpose(bad)


def test_error_for_a_huge_id_does_not_echo_it() -> None:
    with pytest.raises(pg.ConfigurationError) as info:
        pg.purpose("secret" * 100)
    assert "secret" not in str(info.value)


def test_decorator_on_sync_function_keeps_metadata() -> None:
    @pg.purpose("inquiry")
    def answer(question: str) -> str | None:
        """Answer it."""
        return pg.current_purpose()

    assert answer("q") == "inquiry"
    assert answer.__name__ == "answer"
    assert answer.__doc__ == "Answer it."
    assert pg.current_purpose() is None


async def test_decorator_on_coroutine_function() -> None:
    @pg.purpose("inquiry")
    async def answer() -> str | None:
        await asyncio.sleep(0)
        return pg.current_purpose()

    import inspect

    assert inspect.iscoroutinefunction(answer)
    assert await answer() == "inquiry"
    assert pg.current_purpose() is None


def test_decorated_generator_scopes_purpose_to_its_steps() -> None:
    @pg.purpose("recruitment")
    def items() -> Iterator[str | None]:
        yield pg.current_purpose()
        yield pg.current_purpose()
        return

    seen = []
    with pg.purpose("inquiry"):
        for item in items():
            seen.append((item, pg.current_purpose()))
    assert seen == [("recruitment", "inquiry"), ("recruitment", "inquiry")]


def test_decorated_generator_supports_send_throw_and_close() -> None:
    closed = []

    @pg.purpose("recruitment")
    def echo() -> Iterator[str]:
        received = "start"
        try:
            while True:
                try:
                    received = yield f"{received}:{pg.current_purpose()}"
                except KeyError:
                    received = "thrown"
        finally:
            closed.append(pg.current_purpose())

    gen = echo()
    assert next(gen) == "start:recruitment"
    assert gen.send("a") == "a:recruitment"
    assert gen.throw(KeyError()) == "thrown:recruitment"
    assert pg.current_purpose() is None
    gen.close()
    assert closed == ["recruitment"]


def test_decorated_generator_returns_its_value() -> None:
    @pg.purpose("recruitment")
    def inner() -> Iterator[int]:
        yield 1
        return 42

    def outer() -> Iterator[int]:
        result = yield from inner()
        yield result

    assert list(outer()) == [1, 42]


def test_with_inside_generator_never_leaks_to_the_caller() -> None:
    def gen() -> Iterator[str | None]:
        with pg.purpose("marketing"):
            yield pg.current_purpose()
            yield pg.current_purpose()
        yield pg.current_purpose()

    g = gen()
    with pg.purpose("inquiry"):
        assert next(g) == "marketing"
        assert pg.current_purpose() == "inquiry"
        assert next(g) == "marketing"
        assert pg.current_purpose() == "inquiry"
        assert next(g) == "inquiry"
    assert pg.current_purpose() is None


def test_with_inside_generator_is_scoped_after_plain_callers_entered_purposes() -> None:
    # purpose.__enter__ remembers the last caller found not to be a generator: a generator
    # entering a purpose right after it, again and again, must still get a scoped value
    def plain() -> str | None:
        with pg.purpose("inquiry"):
            return pg.current_purpose()

    def gen() -> Iterator[str | None]:
        with pg.purpose("marketing"):
            yield pg.current_purpose()

    for _ in range(3):
        assert plain() == "inquiry"
        for _ in range(2):  # the same generator twice in a row, then a plain caller again
            g = gen()
            assert next(g) == "marketing"
            assert pg.current_purpose() is None
            g.close()


async def test_async_generator_decorator_and_with_inside() -> None:
    @pg.purpose("recruitment")
    async def agen() -> AsyncIterator[str | None]:
        yield pg.current_purpose()
        yield pg.current_purpose()

    assert [x async for x in agen()] == ["recruitment", "recruitment"]

    async def leaky() -> AsyncIterator[str | None]:
        with pg.purpose("marketing"):
            yield pg.current_purpose()
            yield pg.current_purpose()

    it = leaky()
    assert await it.__anext__() == "marketing"
    assert pg.current_purpose() is None
    assert await it.__anext__() == "marketing"
    assert pg.current_purpose() is None
    await it.aclose()


async def test_async_with() -> None:
    async with pg.purpose("inquiry"):
        assert pg.current_purpose() == "inquiry"
    assert pg.current_purpose() is None


async def test_1000_tasks_never_see_each_others_purpose() -> None:
    purposes = ["recruitment", "marketing", "inquiry", "tax.withholding", "security"]

    async def worker(i: int) -> bool:
        mine = purposes[i % len(purposes)]
        with pg.purpose(mine):
            for _ in range(5):
                await asyncio.sleep(0)
                if pg.current_purpose() != mine:
                    return False
        return pg.current_purpose() is None

    results = await asyncio.gather(*(worker(i) for i in range(1000)))
    assert all(results)


def test_thread_pool_helpers_carry_the_purpose_and_leave_nothing_behind() -> None:
    def read() -> str | None:
        return pg.current_purpose()

    with ThreadPoolExecutor(max_workers=2) as pool:
        with pg.purpose("inquiry"):
            assert pool.submit(read).result() is None  # the stdlib does not copy context
            assert pg.submit(pool, read).result() == "inquiry"
            assert pg.with_purpose_context(read)() == "inquiry"
            assert pool.submit(pg.with_purpose_context(read)).result() == "inquiry"
        # the pooled workers were never changed: the next task sees no purpose
        assert [pool.submit(read).result() for _ in range(8)] == [None] * 8


def test_purpose_aware_executor_under_contention() -> None:
    purposes = ["recruitment", "marketing", "inquiry", "security"]
    errors: list[str] = []

    def task(expected: str) -> None:
        for _ in range(50):
            if pg.current_purpose() != expected:
                errors.append(expected)

    with pg.PurposeAwareExecutor(max_workers=4) as pool:
        futures = []
        for i in range(200):
            with pg.purpose(purposes[i % 4]):
                futures.append(pool.submit(task, purposes[i % 4]))
        for f in futures:
            f.result()
        assert pool.submit(pg.current_purpose).result() is None
    assert errors == []


def test_threads_do_not_share_purpose() -> None:
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        with pg.purpose(name):
            barrier.wait()
            seen[name] = pg.current_purpose()

    threads = [threading.Thread(target=run, args=(n,)) for n in ("inquiry", "marketing")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"inquiry": "inquiry", "marketing": "marketing"}


async def test_run_in_executor_keeps_purpose() -> None:
    with pg.purpose("inquiry"):
        assert await pg.run_in_executor(None, pg.current_purpose) == "inquiry"
        assert await asyncio.get_running_loop().run_in_executor(None, pg.current_purpose) is None


async def test_decorated_async_generator_forwards_asend_athrow_and_aclose() -> None:
    import inspect

    closed = []

    @pg.purpose("recruitment")
    async def echo() -> AsyncIterator[str]:
        received = "start"
        try:
            while True:
                try:
                    received = yield f"{received}:{pg.current_purpose()}"
                except KeyError:
                    received = "thrown"
        finally:
            closed.append(pg.current_purpose())

    assert inspect.isasyncgenfunction(echo)
    gen = echo()
    assert await gen.__anext__() == "start:recruitment"
    assert await gen.asend("a") == "a:recruitment"
    assert await gen.athrow(KeyError()) == "thrown:recruitment"
    assert pg.current_purpose() is None
    await gen.aclose()
    assert closed == ["recruitment"]
