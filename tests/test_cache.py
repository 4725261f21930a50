"""``pg.cache``: a value comes out only where a call would have been allowed to compute it (same
purpose, same policy, same restricted subjects, nothing recorded or decided by consent, the clock
or a provision on the way), above or below ``@pg.accessor``, sync and async, from any thread; and
the search for functools caches around guarded accessors."""

from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest
from tests.conftest import CANARY

import purposeguard as pg

MODES = ["enforce", "monitor"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, configured: pg.Policy) -> str:
    """The reference policy, in enforce and in monitor mode."""
    pg.configure(mode=request.param)
    return str(request.param)


def use(mode: str, fn: Callable[..., Any], *args: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Call ``fn(*args)`` where the active purpose may not use what it returns: the value (monitor
    mode; None in enforce mode, where the call must raise) and the violations recorded."""
    with pg.testing.capture_violations() as events:
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation) as info:
                fn(*args)
            assert CANARY not in str(info.value)
            return None, events
        return fn(*args), events


def no_canary(events: list[dict[str, Any]]) -> None:
    assert CANARY not in json.dumps(events)


def counted_accessor(calls: list[Any]) -> Any:
    @pg.accessor(collected_for=("recruitment",))
    def load(applicant_id: str) -> str:
        calls.append(applicant_id)
        return CANARY

    return load


# --- what a cache keeps, and for whom -------------------------------------------------------------


def test_a_value_is_kept_per_purpose_and_arguments(configured: pg.Policy) -> None:
    calls: list[tuple[str | None, int]] = []

    @pg.cache
    def who(n: int) -> tuple[str | None, int]:
        calls.append((pg.current_purpose(), n))
        return pg.current_purpose(), n

    with pg.purpose("recruitment"):
        assert who(1) == who(1) == ("recruitment", 1)
        assert who(2) == ("recruitment", 2)
    with pg.purpose("inquiry"):
        assert who(1) == ("inquiry", 1)  # never the value computed under another purpose
    assert who(1) == (None, 1)
    assert calls == [("recruitment", 1), ("recruitment", 2), ("inquiry", 1), (None, 1)]
    assert who.cache_info() == (1, 4, 128, 4)  # hits, misses, maxsize, currsize


def test_cache_info_and_cache_clear_work_as_in_functools(configured: pg.Policy) -> None:
    @pg.cache(maxsize=2)
    def double(n: int) -> int:
        return 2 * n

    plain = functools.lru_cache(maxsize=2)(lambda n: 2 * n)
    with pg.purpose("recruitment"):
        for n in (1, 1, 2, 3, 1):
            assert double(n) == plain(n)
    assert tuple(double.cache_info()) == tuple(plain.cache_info()) == (1, 4, 2, 2)
    double.cache_clear()
    assert tuple(double.cache_info()) == (0, 0, 2, 0)


def test_the_least_recently_used_value_goes_first(configured: pg.Policy) -> None:
    calls: list[int] = []

    @pg.cache(maxsize=2)
    def f(n: int) -> int:
        calls.append(n)
        return n

    with pg.purpose("recruitment"):
        f(1), f(2), f(1), f(3)  # 2 is the least recently used when 3 comes
        f(1), f(3), f(2)
    assert calls == [1, 2, 3, 2]


def test_keyword_arguments_and_typed(configured: pg.Policy) -> None:
    calls: list[Any] = []

    @pg.cache
    def f(a: Any, b: int = 0) -> Any:
        calls.append((a, b))
        return a

    @pg.cache(typed=True)
    def typed(a: Any) -> Any:
        calls.append(a)
        return a

    with pg.purpose("recruitment"):
        f(1, b=2), f(1, b=2), f(1, 2)
        assert type(typed(1)) is int
        assert type(typed(1.0)) is float
    assert calls == [(1, 2), (1, 2), 1, 1.0]


def test_unhashable_arguments_raise_type_error_as_in_functools(configured: pg.Policy) -> None:
    calls: list[Any] = []

    @pg.cache
    def f(a: Any) -> Any:
        calls.append(a)
        return a

    with pg.purpose("recruitment"), pytest.raises(TypeError, match="unhashable"):
        f([1])
    assert calls == []


def test_methods_are_keyed_by_their_instance(configured: pg.Policy) -> None:
    @dataclass(frozen=True)
    class Repo:
        prefix: str

        @pg.cache
        @pg.accessor(collected_for=("recruitment",))
        def get(self, key: str) -> str:
            return f"{self.prefix}-{key}"

        @classmethod
        @pg.cache
        def named(cls, key: str) -> str:
            return f"{cls.__name__}-{key}"

        @staticmethod
        @pg.cache
        def plain(key: str) -> str:
            return key

    a, b = Repo("a"), Repo("b")
    with pg.purpose("recruitment"):
        assert (a.get("1"), b.get("1"), a.get("1")) == ("a-1", "b-1", "a-1")
        assert (a.named("1"), Repo.named("1"), a.plain("1")) == ("Repo-1", "Repo-1", "1")
    assert Repo.get.cache_info().hits == Repo.named.cache_info().hits == 1
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        a.get("1")


def test_a_bound_accessor_is_checked_at_every_hit(mode: str) -> None:
    class Repo:
        @pg.accessor(collected_for=("recruitment",))
        def get(self, key: str) -> str:
            return CANARY

    cached = pg.cache(Repo().get)
    with pg.purpose("recruitment"):
        assert cached("1") == CANARY
        with pg.testing.isolated_guards():
            _, events = use(mode, cached, "1")
    assert [e["reason"] for e in events] == ["no_policy"]
    assert cached.cache_info().hits == 1


async def test_coroutine_functions_are_keyed_as_functions_are(configured: pg.Policy) -> None:
    """The sync path builds its key inline, for speed: it must agree with the async path's."""
    calls: dict[str, list[Any]] = {"sync": [], "async": []}

    @pg.cache(maxsize=3, typed=True)
    def sync(a: Any, b: Any = 0) -> Any:
        calls["sync"].append((pg.current_purpose(), a, b))
        return a

    @pg.cache(maxsize=3, typed=True)
    async def coroutine(a: Any, b: Any = 0) -> Any:
        calls["async"].append((pg.current_purpose(), a, b))
        return a

    sequence = [((1,), {}), ((1.0,), {}), ((1,), {"b": 2}), ((1, 2), {}), ((1,), {}), ((3,), {})]
    for name in ("recruitment", "inquiry", "recruitment"):
        with pg.purpose(name):
            for args, kwargs in sequence:
                assert sync(*args, **kwargs) == await coroutine(*args, **kwargs)
    assert calls["sync"] == calls["async"]
    assert sync.cache_info() == coroutine.cache_info()


def test_it_keeps_the_signature_and_metadata(configured: pg.Policy) -> None:
    @pg.cache
    @pg.accessor(collected_for=("recruitment",))
    def load(applicant_id: str, *, full: bool = False) -> str:
        """Load a skill sheet."""
        return applicant_id

    assert str(inspect.signature(load)) == "(applicant_id: 'str', *, full: 'bool' = False) -> 'str'"
    assert (load.__name__, load.__doc__) == ("load", "Load a skill sheet.")


# --- above and below an accessor ------------------------------------------------------------------


@pytest.mark.parametrize("where", ["above", "below"])
def test_a_cached_value_never_comes_out_under_a_purpose_that_is_denied(
    mode: str, where: str
) -> None:
    calls: list[str] = []

    def load(applicant_id: str) -> str:
        calls.append(applicant_id)
        return CANARY

    guard = pg.accessor(collected_for=("recruitment",))
    cached = pg.cache(guard(load)) if where == "above" else guard(pg.cache(load))
    with pg.purpose("recruitment.selection"), pg.testing.capture_violations() as events:
        assert cached("a1") == cached("a1") == CANARY
    assert (events, calls) == ([], ["a1"])
    for scope in (pg.purpose("marketing"), pg.purpose("unknown.thing")):
        with scope:
            value, events = use(mode, cached, "a1")
            assert [e["accessor"].rpartition(".")[2] for e in events] == ["load"]
            assert [e["enforced"] for e in events] == [mode == "enforce"]
            assert [e["code"].split(":")[0].rpartition("/")[2] for e in events] == ["test_cache.py"]
            no_canary(events)
    value, events = use(mode, cached, "a1")  # no purpose at all
    assert [e["reason"] for e in events] == ["no_purpose"]
    assert value == (None if mode == "enforce" else CANARY)


def test_every_hit_above_an_accessor_goes_through_its_check(mode: str) -> None:
    """A hit serves what an allowed call computed; the accessor's own check still runs for it,
    so an accessor that no longer allows the purpose (here: its guard unbound) denies the hit."""
    calls: list[str] = []
    cached = pg.cache(counted_accessor(calls))
    with pg.purpose("recruitment"):
        assert cached("a1") == CANARY
        with pg.testing.isolated_guards():  # the accessor's guard now denies (no_policy)
            _, events = use(mode, cached, "a1")
    assert [(e["reason"], e["channel"]) for e in events] == [("no_policy", "accessor")]
    assert events[0]["code"].split(":")[0].endswith("test_cache.py")
    assert cached.cache_info().hits == 1
    assert calls == ["a1"]


def test_monitor_mode_records_every_denied_call_and_keeps_nothing(configured: pg.Policy) -> None:
    calls: list[str] = []
    cached = pg.cache(counted_accessor(calls))
    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert [cached("a1") for _ in range(3)] == [CANARY] * 3
    assert len(events) == 3
    assert calls == ["a1"] * 3  # a value whose computation recorded a violation is never kept
    assert cached.cache_info().currsize == 0
    pg.configure(mode="enforce")  # and a later switch to enforce finds nothing to serve
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        cached("a1")


def test_a_violation_caught_inside_the_function_is_not_cached_away(mode: str) -> None:
    load = counted_accessor([])

    @pg.cache
    def sheet(applicant_id: str) -> str:
        try:
            return load(applicant_id)  # type: ignore[no-any-return]
        except pg.PurposeViolation:
            return "withheld"

    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        first, second = sheet("a1"), sheet("a1")
    assert len(events) == 2  # each call is a use, each is recorded
    assert (first, second) == (("withheld",) * 2 if mode == "enforce" else (CANARY,) * 2)
    assert sheet.cache_info().currsize == 0


def test_a_guard_inside_the_function_is_checked_for_each_purpose(mode: str) -> None:
    """The function reads data it may use under ``recruitment.selection`` but not under the
    broader ``recruitment``: a cache keyed without the purpose would serve it there."""

    @pg.accessor(collected_for=("recruitment.selection",))
    def score(applicant_id: str) -> str:
        return CANARY

    @pg.cache
    def summary(applicant_id: str) -> str:
        return score(applicant_id)  # type: ignore[no-any-return]

    with pg.purpose("recruitment.selection"):
        assert summary("a1") == CANARY
    with pg.purpose("recruitment"):
        _, events = use(mode, summary, "a1")
    assert [e["reason"] for e in events] == ["not_allowed"]
    no_canary(events)


def test_functools_cache_above_an_accessor_serves_every_purpose_unchecked(
    configured: pg.Policy,
) -> None:
    """The hazard pg.cache exists for (and that configure() refuses where it can see it)."""
    calls: list[str] = []
    unchecked = functools.cache(counted_accessor(calls))
    with pg.purpose("recruitment"):
        unchecked("a1")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert unchecked("a1") == CANARY
    assert (events, calls) == ([], ["a1"])


def test_functools_cache_below_an_accessor_is_checked_on_every_call(mode: str) -> None:
    calls: list[str] = []

    @pg.accessor(collected_for=("recruitment",))
    @functools.cache
    def load(applicant_id: str) -> str:
        calls.append(applicant_id)
        return CANARY

    with pg.purpose("recruitment"):
        assert load("a1") == load("a1") == CANARY
    with pg.purpose("marketing"):
        _, events = use(mode, load, "a1")
    assert len(events) == 1
    assert calls == ["a1"]


def test_a_cached_property_on_a_guarded_record_is_refused(configured: pg.Policy) -> None:
    """It would keep what it derives on the instance, for every later purpose (tests of the
    refusal itself: tests/test_derived.py)."""
    with pytest.raises(pg.ConfigurationError, match="cached_property"):

        class Applicant(pg.GuardedModel):
            email: Annotated[str, pg.CollectedFor("recruitment")]

            @functools.cached_property
            def shout(self) -> str:
                return self.email.upper()


# --- a new policy, a subject, consent, the clock, a provision -------------------------------------

POLICY = """\
policy: cache-test
version: "{version}"
mode: {mode}
purposes:
  recruitment:
    description: Recruitment
  marketing:
    description: Marketing
{compatible}
"""


def write_policy(path: Path, mode: str, version: str, marketing_may_use_recruitment: bool) -> None:
    compatible = "    compatible_with: [recruitment]" if marketing_may_use_recruitment else ""
    path.write_text(POLICY.format(version=version, mode=mode, compatible=compatible))


@pytest.mark.parametrize("policy_mode", MODES)
def test_a_reload_that_denies_is_in_force_at_the_next_hit(
    tmp_path: Path, isolated: None, policy_mode: str
) -> None:
    path = tmp_path / "policy.yaml"
    write_policy(path, policy_mode, "1", marketing_may_use_recruitment=True)
    pg.configure(policy=path)
    calls: list[str] = []
    cached = pg.cache(counted_accessor(calls))

    @pg.cache
    def around(applicant_id: str) -> str:  # an accessor called, not wrapped
        return cached(applicant_id)  # type: ignore[no-any-return]

    with pg.purpose("marketing"):
        assert around("a1") == around("a1") == CANARY
    write_policy(path, policy_mode, "2", marketing_may_use_recruitment=False)
    pg.reload_policy()
    with pg.purpose("marketing"):
        for fn in (cached, around):
            _, events = use(policy_mode, fn, "a1")
            assert [(e["reason"], e["policy_version"]) for e in events] == [("not_allowed", "2")]
            no_canary(events)
    assert cached.cache_info().currsize == around.cache_info().currsize == 0


def applicant_class() -> Any:
    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]
        consented_for: Annotated[frozenset[str], pg.Consent] = frozenset()

    return Applicant


@pytest.fixture
def registry(mode: str) -> pg.Registry:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg)
    return reg


def test_a_subject_restricted_after_the_value_was_cached_is_denied_at_the_next_hit(
    registry: pg.Registry, mode: str
) -> None:
    db = {"a-1": applicant_class()(applicant_id="a-1", email=CANARY)}
    calls: list[str] = []

    @pg.cache
    def email_of(applicant_id: str) -> str:
        calls.append(applicant_id)
        return db[applicant_id].email

    with pg.purpose("recruitment"):
        assert email_of("a-1") == email_of("a-1") == CANARY
        registry.suspend_use("a-1", ["recruitment"])
        _, events = use(mode, email_of, "a-1")
        registry.resume_use("a-1")
        assert email_of("a-1") == CANARY
    assert [e["reason"] for e in events] == ["suspended"]
    no_canary(events)
    assert calls == ["a-1"] * 3


def test_a_restricted_subjects_value_is_never_kept(registry: pg.Registry, mode: str) -> None:
    """Allowed for a subject in the restricted set (suspended for another purpose): the answer
    came from the subject's own suspensions, which can change without changing the set."""
    db = {"a-1": applicant_class()(applicant_id="a-1", email=CANARY)}
    calls: list[str] = []

    @pg.cache
    def email_of(applicant_id: str) -> str:
        calls.append(applicant_id)
        return db[applicant_id].email

    registry.suspend_use("a-1", ["marketing"])
    with pg.purpose("recruitment"):
        assert email_of("a-1") == email_of("a-1") == CANARY
    assert calls == ["a-1", "a-1"]


def test_a_value_allowed_by_consent_is_never_kept(registry: pg.Registry, mode: str) -> None:
    applicant = applicant_class()
    db = {
        "a-1": applicant(applicant_id="a-1", email=CANARY, consented_for={"marketing"}),
        "a-2": applicant(applicant_id="a-2", email=CANARY),
    }
    registry.grant_consent("a-2", purposes=["marketing"])
    calls: list[str] = []

    @pg.cache
    def email_of(applicant_id: str) -> str:
        calls.append(applicant_id)
        return db[applicant_id].email

    with pg.purpose("marketing"), pg.testing.capture_violations() as allowed:
        for subject in ("a-1", "a-1", "a-2", "a-2"):
            assert email_of(subject) == CANARY
    assert allowed == []
    registry.withdraw_consent("a-2", purposes=["marketing"])
    with pg.purpose("marketing"):
        _, events = use(mode, email_of, "a-2")
    assert [e["reason"] for e in events] == ["not_allowed"]
    assert calls == ["a-1", "a-1", "a-2", "a-2", "a-2"]


def test_a_value_allowed_only_within_a_retention_period_is_never_kept(mode: str) -> None:
    class Inquiry(pg.GuardedModel):
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    t0 = datetime(2024, 4, 1, tzinfo=UTC)
    now = [t0]
    record = Inquiry(collected_at=t0, email=CANARY)
    calls: list[int] = []

    @pg.cache
    def email(n: int) -> str:
        calls.append(n)
        return record.email

    with pg.testing.retention_clock(lambda: now[0]), pg.purpose("inquiry"):
        assert email(1) == email(1) == CANARY
        now[0] = t0 + timedelta(days=30)
        _, events = use(mode, email, 1)
    assert [e["reason"] for e in events] == ["expired"]
    assert calls == [1, 1, 1]


def test_a_value_computed_with_a_provision_is_never_kept(mode: str) -> None:
    pg.configure(registry=pg.Registry(refresh_interval=None), subject_key=b"k" * 32)

    @pg.cache
    def send(subject: str) -> str:
        return pg.provide("payroll_contractor", subject=subject, fields=["name"]).basis

    with pg.purpose("tax.withholding"):
        assert send("s1") == send("s1") == "entrustment"
    assert send.cache_info() == (0, 2, 128, 0)
    assert len(pg.get_registry().records("s1")) == 2  # type: ignore[union-attr]


def test_a_violation_inside_a_nested_cache_keeps_the_outer_value_out_too(
    configured: pg.Policy,
) -> None:
    inner = pg.cache(counted_accessor([]))

    @pg.cache
    def outer(applicant_id: str) -> str:
        return inner(applicant_id)  # type: ignore[no-any-return]

    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert outer("a1") == outer("a1") == CANARY
    assert len(events) == 2
    assert outer.cache_info().currsize == inner.cache_info().currsize == 0


def test_a_purpose_declared_by_a_generator_keys_by_that_purpose(configured: pg.Policy) -> None:
    cached = pg.cache(counted_accessor([]))

    @pg.purpose("recruitment")
    def screen() -> Iterator[str]:
        yield cached("a1")
        yield cached("a1")

    with pg.purpose("marketing"):
        assert list(screen()) == [CANARY, CANARY]
        with pytest.raises(pg.PurposeViolation):
            cached("a1")
    assert cached.cache_info().hits == 1


# --- coroutine functions --------------------------------------------------------------------------


async def test_a_coroutine_functions_results_are_kept_per_purpose(mode: str) -> None:
    calls: list[str] = []

    @pg.cache
    @pg.accessor(collected_for=("recruitment",))
    async def fetch(applicant_id: str) -> str:
        calls.append(applicant_id)
        return CANARY

    assert inspect.iscoroutinefunction(fetch)
    with pg.purpose("recruitment"):
        assert await fetch("a1") == await fetch("a1") == CANARY
    assert (fetch.cache_info().hits, calls) == (1, ["a1"])
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        pending = fetch("a1")  # creating the coroutine never raises; awaiting it does
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation):
                await pending
        else:
            assert await pending == CANARY
    assert len(events) == 1
    no_canary(events)


async def test_a_coroutine_is_checked_for_the_purpose_it_was_called_under(mode: str) -> None:
    """As the accessor alone: a call made under a denied purpose is denied wherever it is
    awaited; and the purpose it is awaited under is checked as well."""
    fetch = pg.cache(pg.accessor(collected_for=("recruitment",))(_async_canary))
    with pg.purpose("recruitment"):
        await fetch("a1")  # now cached
    with pg.purpose("marketing"):
        pending = fetch("a1")
    with pg.purpose("recruitment"), pg.testing.capture_violations() as made_denied:
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation):
                await pending
        else:
            assert await pending == CANARY
    with pg.purpose("recruitment"):
        pending = fetch("a1")
    with pg.purpose("marketing"), pg.testing.capture_violations() as awaited_denied:
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation):
                await pending
        else:
            assert await pending == CANARY
    assert [e["purpose"] for e in made_denied + awaited_denied] == ["marketing", "marketing"]


async def _async_canary(applicant_id: str) -> str:
    return CANARY


async def test_cached_async_methods(configured: pg.Policy) -> None:
    class Repo:
        @pg.cache(maxsize=4)
        async def get(self, key: str) -> str:
            return f"{id(self)}-{key}"

    a, b = Repo(), Repo()
    with pg.purpose("recruitment"):
        assert await a.get("1") == await a.get("1") != await b.get("1")
    assert a.get.cache_info() == Repo.get.cache_info() == (1, 2, 4, 2)
    a.get.cache_clear()
    assert Repo.get.cache_info() == (0, 0, 4, 0)


async def test_an_async_computation_is_not_kept_after_a_violation(configured: pg.Policy) -> None:
    fetch = pg.cache(pg.accessor(collected_for=("recruitment",))(_async_canary))
    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert await fetch("a1") == await fetch("a1") == CANARY
    assert len(events) == 2
    assert fetch.cache_info() == (0, 2, 128, 0)


# --- threads --------------------------------------------------------------------------------------


def run_threads(*targets: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_threads_computing_at_once_each_keep_their_own_purposes_value(
    configured: pg.Policy,
) -> None:
    both_inside = threading.Barrier(2)  # both computations run at the same time

    @pg.cache
    def who(n: int) -> str | None:
        both_inside.wait(timeout=10)
        return pg.current_purpose()

    results: dict[str, list[str | None]] = {}

    def caller(name: str) -> Callable[[], None]:
        def run() -> None:
            with pg.purpose(name):
                results[name] = [who(1), who(1)]  # computed side by side, then a hit

        return run

    run_threads(caller("recruitment"), caller("inquiry"))
    assert results == {"recruitment": ["recruitment"] * 2, "inquiry": ["inquiry"] * 2}
    assert who.cache_info() == (2, 2, 128, 2)


def test_a_value_computed_while_the_policy_was_replaced_is_not_kept(
    configured: pg.Policy,
) -> None:
    computing, replaced = threading.Event(), threading.Event()

    @pg.cache
    def slow(n: int) -> int:
        computing.set()
        assert replaced.wait(timeout=10)
        return n

    def call() -> None:
        with pg.purpose("recruitment"):
            assert slow(1) == 1

    thread = threading.Thread(target=call)
    thread.start()
    assert computing.wait(timeout=10)
    pg.configure(policy=pg.get_policy())  # compiled again: a new policy generation
    replaced.set()
    thread.join()
    assert slow.cache_info().currsize == 0


def test_a_value_computed_across_cache_clear_is_not_kept(configured: pg.Policy) -> None:
    computing, cleared = threading.Event(), threading.Event()

    @pg.cache
    def slow(n: int) -> int:
        computing.set()
        assert cleared.wait(timeout=10)
        return n

    def call() -> None:
        with pg.purpose("recruitment"):
            slow(1)

    thread = threading.Thread(target=call)
    thread.start()
    assert computing.wait(timeout=10)
    slow.cache_clear()  # e.g. after a data subject's deletion request
    cleared.set()
    thread.join()
    assert slow.cache_info().currsize == 0


def test_a_violation_in_a_worker_thread_keeps_the_value_out(configured: pg.Policy) -> None:
    load = counted_accessor([])

    @pg.cache
    def via_pool(applicant_id: str) -> str:
        with pg.PurposeAwareExecutor(max_workers=1) as pool:
            return pool.submit(load, applicant_id).result()  # type: ignore[no-any-return]

    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert via_pool("a1") == via_pool("a1") == CANARY
    assert len(events) == 2
    assert via_pool.cache_info().currsize == 0


def test_many_threads_on_a_small_cache_always_get_their_own_value(
    configured: pg.Policy,
) -> None:
    purposes = ["recruitment", "recruitment.selection", "inquiry", "staffing"]
    start = threading.Barrier(len(purposes))

    @pg.cache(maxsize=3)  # smaller than what is asked: evictions race with hits
    def value(n: int) -> tuple[str | None, int]:
        return pg.current_purpose(), n

    def caller(name: str) -> Callable[[], None]:
        def run() -> None:
            start.wait(timeout=10)
            with pg.purpose(name):
                for i in range(2_000):
                    assert value(i % 5) == (name, i % 5)

        return run

    run_threads(*(caller(p) for p in purposes))
    assert value.cache_info().currsize <= 3


# --- what pg.cache refuses ------------------------------------------------------------------------


def test_it_refuses_what_it_cannot_cache(configured: pg.Policy) -> None:
    def gen() -> Iterator[int]:
        yield 1

    async def agen() -> Any:
        yield 1

    for target in (gen, agen, pg.accessor(collected_for=("recruitment",))(gen)):
        with pytest.raises(pg.ConfigurationError, match="generator function"):
            pg.cache(target)
    for descriptor in (classmethod(len), staticmethod(len)):
        with pytest.raises(pg.ConfigurationError, match=r"put @(classmethod|staticmethod) on top"):
            pg.cache(descriptor)  # type: ignore[call-overload]
    with pytest.raises(pg.ConfigurationError, match="put @classmethod on top"):
        pg.cache(pg.accessor(collected_for=("recruitment",))(classmethod(len)))
    with pytest.raises(pg.ConfigurationError, match="caches functions"):
        pg.cache(functools.cached_property(len))  # type: ignore[call-overload]
    for maxsize in (0, -1, None, True, 1.5):
        with pytest.raises(pg.ConfigurationError, match="never unbounded"):
            pg.cache(maxsize=maxsize)  # type: ignore[call-overload]
    with pytest.raises(pg.ConfigurationError, match="typed"):
        pg.cache(typed=1)  # type: ignore[call-overload]


def test_it_refuses_a_functools_cache_around_an_accessor_beneath_it(configured: pg.Policy) -> None:
    accessor = counted_accessor([])

    class Repo:
        get = pg.accessor(collected_for=("recruitment",))(lambda self, key: key)

    inners = (
        functools.cache(accessor),
        functools.lru_cache(maxsize=8)(accessor),
        functools.cache(Repo().get),  # a bound accessor
    )
    for inner in inners:
        with pytest.raises(pg.ConfigurationError, match=r"replace that cache with pg\.cache"):
            pg.cache(inner)
    pg.cache(pg.accessor(collected_for=("recruitment",))(functools.cache(len)))  # below: fine


def test_an_accessor_refuses_a_cached_property(configured: pg.Policy) -> None:
    with pytest.raises(pg.ConfigurationError, match=r"cached_property .*@pg\.cache"):

        class Holder:
            @pg.accessor(collected_for=("recruitment",))  # type: ignore[arg-type]
            @functools.cached_property
            def sheet(self) -> str:
                return CANARY


# --- finding functools caches around accessors ----------------------------------------------------

HAZARDS = """
import functools
import purposeguard as pg

def plain(x):
    return x

@pg.accessor(collected_for=("recruitment",))
def load(x):
    return x

cached_load = functools.cache(load)
lru_load = functools.lru_cache(maxsize=8)(load)

def logged(fn):
    @functools.wraps(fn)
    def run(*args):
        return fn(*args)
    return run

indirect = functools.cache(logged(load))
ok_below = pg.accessor(collected_for=("recruitment",))(functools.cache(plain))
ok_pg_cache = pg.cache(load)
ok_plain = functools.cache(plain)

class Repo:
    @functools.cache
    @pg.accessor(collected_for=("recruitment",))
    def get(self, x):
        return x

    @staticmethod
    @functools.cache
    @pg.accessor(collected_for=("recruitment",))
    def sget(x):
        return x

    @classmethod
    @functools.cache
    @pg.accessor(collected_for=("recruitment",))
    def cget(cls, x):
        return x

    @property
    @functools.cache
    @pg.accessor(collected_for=("recruitment",))
    def prop(self):
        return 1

    @functools.cached_property
    @pg.accessor(collected_for=("recruitment",))
    def once(self):
        return 1

    class Inner:
        nested = functools.cache(load)

    @pg.accessor(collected_for=("recruitment",))
    def own(self, x):
        return x

bound = functools.cache(Repo().own)  # an accessor bound to an instance
"""

FOUND = [
    "cache_hazards.Repo.Inner.nested",
    "cache_hazards.Repo.cget",
    "cache_hazards.Repo.get",
    "cache_hazards.Repo.once",
    "cache_hazards.Repo.prop",
    "cache_hazards.Repo.sget",
    "cache_hazards.bound",
    "cache_hazards.cached_load",
    "cache_hazards.indirect",
    "cache_hazards.lru_load",
]


class Unreadable:
    """Stands for a proxy in a module (Flask's ``request``): reading its class raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("working outside of a request")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("working outside of a request")


@pytest.fixture
def hazards(configured: pg.Policy, isolated: None) -> Iterator[types.ModuleType]:
    module = types.ModuleType("cache_hazards")
    sys.modules[module.__name__] = module
    try:
        exec(HAZARDS, module.__dict__)
        module.request = Unreadable()  # type: ignore[attr-defined]
        yield module
    finally:
        del sys.modules[module.__name__]


def test_unchecked_caches_finds_functools_caches_around_accessors(
    hazards: types.ModuleType,
) -> None:
    assert pg.testing.unchecked_caches([hazards]) == FOUND
    assert set(FOUND) <= set(pg.testing.unchecked_caches())  # every module loaded


def test_unchecked_caches_never_imports_a_lazy_module(hazards: types.ModuleType) -> None:
    class Lazy(types.ModuleType):
        def __getattribute__(self, name: str) -> Any:
            raise AssertionError(f"the scan read {name} through the module's own lookup")

    lazy = Lazy("lazy_mod")
    object.__getattribute__(lazy, "__dict__")["cached"] = functools.cache(hazards.load)
    assert pg.testing.unchecked_caches([lazy]) == ["lazy_mod.cached"]


def test_configure_refuses_a_module_with_a_functools_cache_around_an_accessor(
    hazards: types.ModuleType, alj_policy: pg.Policy
) -> None:
    before = pg.get_policy()
    other = pg.testing.make_policy(["recruitment"], id="other")
    with pytest.raises(pg.ConfigurationError) as info:
        pg.configure(policy=other)
    assert all(name in str(info.value) for name in FOUND)
    assert "@pg.cache" in str(info.value)
    sink = pg.testing.RecordingSink()
    with pytest.raises(pg.ConfigurationError):
        pg.configure(policy=other, audit_log=sink, mode="monitor")
    assert (pg.get_policy(), pg.testing.flush(), sink.records) == (before, True, [])
    assert [e["mode"] for e in _denied_marketing()] == ["enforce"]  # nothing changed
    for name in [n.rpartition(".")[2] for n in FOUND if n.count(".") == 1]:
        delattr(hazards, name)
    del hazards.Repo
    pg.configure(policy=other)
    assert pg.get_policy() is other


def _denied_marketing() -> list[dict[str, Any]]:
    @pg.accessor(collected_for=("recruitment",))
    def load() -> str:
        return CANARY

    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        try:
            load()
        except pg.PurposeViolation:
            pass
    return events


def test_reload_policy_refuses_it_and_records_why(tmp_path: Path, isolated: None) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(version="1", mode="enforce", compatible=""))
    sink = pg.testing.RecordingSink()
    pg.configure(policy=path, audit_log=sink)
    module = types.ModuleType("cache_hazards_later")  # imported after configure()
    sys.modules[module.__name__] = module
    try:
        exec(HAZARDS, module.__dict__)
        with pytest.raises(pg.ConfigurationError, match=r"cache_hazards_later\.cached_load"):
            pg.reload_policy()
    finally:
        del sys.modules[module.__name__]
    [failed] = sink.named("purposeguard.policy_reload_failed")
    assert "cache_hazards_later.cached_load" in failed["error"]
