"""Guarded accessors on every kind of callable, in enforce and monitor mode."""

from __future__ import annotations

import contextlib
import inspect
import pickle
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import purposeguard as pg
from purposeguard.models import Tag


def recruitment_accessor() -> Any:
    @pg.accessor(collected_for=("recruitment",))
    def load(applicant_id: str, *, full: bool = False) -> str:
        """Load a skill sheet."""
        return f"sheet-{applicant_id}"

    return load


def test_allowed_purposes_call_through(configured: pg.Policy) -> None:
    load = recruitment_accessor()
    for purpose in ("recruitment", "recruitment.selection"):
        with pg.purpose(purpose), pg.testing.capture_violations() as events:
            assert load("a1") == "sheet-a1"
        assert events == []


@pytest.mark.parametrize(
    ("purpose", "reason"),
    [(None, "no_purpose"), ("marketing", "not_allowed"), ("unknown.thing", "unknown_purpose")],
)
def test_denied_purposes_raise_in_enforce_mode(
    configured: pg.Policy, purpose: str | None, reason: str
) -> None:
    load = recruitment_accessor()
    scope = pg.purpose(purpose) if purpose else contextlib.nullcontext()
    with (
        pg.testing.capture_violations() as events,
        scope,
        pytest.raises(pg.PurposeViolation) as info,
    ):
        load("a1")
    error = info.value
    assert (purpose, ("recruitment",), reason) == (error.purpose, error.allowed, error.reason)
    assert error.accessor == f"{__name__}:recruitment_accessor.<locals>.load"
    assert error.policy_version == "2024-09-01"
    assert "a1" not in str(error)
    assert [reason] == [e["reason"] for e in events]
    assert events[0]["enforced"] is True


def test_monitor_mode_returns_the_real_result_and_records(configured: pg.Policy) -> None:
    load = recruitment_accessor()
    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert load("a1") == "sheet-a1"
    assert [(e["mode"], e["enforced"], e["reason"]) for e in events] == [
        ("monitor", False, "not_allowed")
    ]


def test_violation_is_not_attribute_or_os_error(configured: pg.Policy) -> None:
    assert issubclass(pg.PurposeViolation, pg.PurposeGuardError)
    assert issubclass(pg.PurposeGuardError, Exception)
    assert not issubclass(pg.PurposeViolation, AttributeError | OSError)

    class Holder:
        @property
        def sheet(self) -> str:
            return recruitment_accessor()("a1")  # type: ignore[no-any-return]

    with pytest.raises(pg.PurposeViolation):
        getattr(Holder(), "sheet", "default")  # getattr's default would swallow AttributeError
    with pytest.raises(pg.PurposeViolation):
        hasattr(Holder(), "sheet")


def test_violation_survives_pickling(configured: pg.Policy) -> None:
    with pytest.raises(pg.PurposeViolation) as info, pg.purpose("marketing"):
        recruitment_accessor()("a1")
    again = pickle.loads(pickle.dumps(info.value))
    for name in ("purpose", "allowed", "prohibited", "accessor", "reason", "policy_version"):
        assert getattr(info.value, name) == getattr(again, name)
    assert str(info.value) == str(again)


def test_signature_and_metadata_are_kept(configured: pg.Policy) -> None:
    load = recruitment_accessor()
    assert str(inspect.signature(load)) == "(applicant_id: 'str', *, full: 'bool' = False) -> 'str'"
    assert load.__doc__ == "Load a skill sheet."
    assert load.__name__ == "load"


def test_methods_classmethods_and_staticmethods(configured: pg.Policy) -> None:
    class Repo:
        prefix = "r"

        @pg.accessor(collected_for=("recruitment",))
        def get(self, key: str) -> str:
            return f"{self.prefix}-{key}"

        @pg.accessor(collected_for=("recruitment",))
        @classmethod
        def cget(cls, key: str) -> str:
            return f"{cls.prefix}-{key}"

        @pg.accessor(collected_for=("recruitment",))
        @staticmethod
        def sget(key: str) -> str:
            return f"s-{key}"

    repo = Repo()
    with pg.purpose("recruitment"):
        assert (
            repo.get("1"),
            Repo.cget("2"),
            Repo.sget("3"),
            Repo.get(repo, "4"),
        ) == ("r-1", "r-2", "s-3", "r-4")
    for call in (lambda: repo.get("1"), lambda: Repo.cget("2"), lambda: repo.sget("3")):
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            call()
    assert str(inspect.signature(repo.get)) == "(key: 'str') -> 'str'"


async def test_async_accessor(configured: pg.Policy) -> None:
    @pg.accessor(collected_for=("inquiry",))
    async def fetch(key: str) -> str:
        return key

    assert inspect.iscoroutinefunction(fetch)
    with pg.purpose("inquiry"):
        assert await fetch("k") == "k"
    with pg.purpose("marketing"):
        pending = fetch("k")  # creating the coroutine never raises; awaiting it does
        with pytest.raises(pg.PurposeViolation):
            await pending
    pg.configure(mode="monitor")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert await fetch("k") == "k"
    assert len(events) == 1


def test_generator_accessor_checks_every_step(configured: pg.Policy) -> None:
    @pg.accessor(collected_for=("recruitment",))
    def stream() -> Iterator[int]:
        yield 1
        yield 2

    assert inspect.isgeneratorfunction(stream)
    with pg.purpose("recruitment"):
        gen = stream()
        assert next(gen) == 1
    with pytest.raises(pg.PurposeViolation):
        next(gen)  # resumed outside the purpose
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        stream()
    with pg.purpose("recruitment"):
        assert list(stream()) == [1, 2]


async def test_async_generator_accessor(configured: pg.Policy) -> None:
    @pg.accessor(collected_for=("recruitment",))
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    assert inspect.isasyncgenfunction(stream)
    with pg.purpose("recruitment"):
        assert [x async for x in stream()] == [1, 2]
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        stream()
    with pg.purpose("recruitment"):
        agen = stream()
        assert await agen.__anext__() == 1
    with pytest.raises(pg.PurposeViolation):
        await agen.__anext__()


def test_prohibited_and_several_tags_must_all_comply(configured: pg.Policy) -> None:
    class Record:
        __purposeguard_fields__ = {  # noqa: RUF012 - the table models provide
            "email": Tag.of(["marketing", "inquiry"]),
        }

    @pg.accessor(
        collected_for=("marketing",),
        prohibited=("marketing.promotion",),
        fields=[(Record, "email")],
    )
    def read() -> str:
        return "x"

    with pg.purpose("marketing.events"):
        assert read() == "x"
    with pg.purpose("marketing.promotion"), pytest.raises(pg.PurposeViolation) as info:
        read()
    assert info.value.reason == "prohibited"
    with pg.purpose("inquiry"), pytest.raises(pg.PurposeViolation):
        read()  # the accessor's own tag does not allow inquiry


def test_unknown_purpose_in_a_tag_fails_at_definition(configured: pg.Policy) -> None:
    with pytest.raises(pg.PolicyError, match="does not declare: recruiting"):

        @pg.accessor(collected_for=("recruiting",))
        def read() -> None: ...

    with pytest.raises(pg.ConfigurationError, match="not a purpose id"):
        pg.accessor(collected_for=("Bad Id",))(lambda: None)
    with pytest.raises(pg.ConfigurationError, match="not a str"):
        pg.accessor(collected_for="recruitment")  # type: ignore[arg-type]
    with pytest.raises(pg.ConfigurationError, match="needs collected_for= or fields="):
        pg.accessor()


@pytest.mark.usefixtures("isolated")
def test_unknown_purpose_fails_when_the_policy_is_configured(alj_policy: pg.Policy) -> None:
    @pg.accessor(collected_for=("recruitment",))
    def read() -> str:
        return "x"

    pg.configure(policy=alj_policy)
    narrow = pg.testing.make_policy(["marketing"], id="narrow")
    with pytest.raises(pg.PolicyError, match="does not declare: recruitment"):
        pg.configure(policy=narrow)
    assert pg.get_policy() is alj_policy  # the last good policy stays
    with pg.purpose("recruitment"):
        assert read() == "x"


def test_no_policy_denies_everything() -> None:
    @pg.accessor(collected_for=("recruitment",))
    def read() -> str:
        return "x"

    with pg.purpose("recruitment"), pytest.raises(pg.PurposeViolation) as info:
        read()
    assert info.value.reason == "no_policy"


def test_guard_function_on_an_imported_module(configured: pg.Policy) -> None:
    from tests.fixtures_pkg import thirdparty

    original = thirdparty.lookup_applicant
    one = pg.guard_function(
        f"{thirdparty.__name__}:lookup_applicant", collected_for=("recruitment",)
    )
    two = pg.guard_function(f"{thirdparty.__name__}:Directory.find", collected_for=("recruitment",))
    with pg.purpose("recruitment"):
        assert thirdparty.lookup_applicant("a") == {"id": "a"}
        assert thirdparty.Directory.find("b") == "b"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as info:
        thirdparty.lookup_applicant("a")
    assert info.value.accessor == "tests.fixtures_pkg.thirdparty:lookup_applicant"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        thirdparty.Directory.find("b")
    with pytest.raises(pg.ConfigurationError, match="already guarded"):
        pg.guard_function(f"{thirdparty.__name__}:lookup_applicant", collected_for=("recruitment",))
    one.unpatch()
    two.unpatch()
    assert thirdparty.lookup_applicant is original
    with pg.purpose("marketing"):
        assert thirdparty.Directory.find("b") == "b"


def test_unpatch_leaves_the_original_unmarked_so_it_can_be_guarded_again(
    configured: pg.Policy,
) -> None:
    from tests.fixtures_pkg import thirdparty

    target = f"{thirdparty.__name__}:lookup_applicant"
    first = pg.guard_function(target, collected_for=("recruitment",))
    first.unpatch()
    assert not hasattr(thirdparty.lookup_applicant, "_self_guard")
    again = pg.guard_function(target, collected_for=("recruitment",))  # no "already guarded"
    try:
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            thirdparty.lookup_applicant("a")
    finally:
        again.unpatch()
    with pg.purpose("marketing"):
        assert thirdparty.lookup_applicant("a") == {"id": "a"}


def test_guard_function_before_the_module_is_imported(configured: pg.Policy) -> None:
    name = "tests.fixtures_pkg.late"
    assert name not in sys.modules
    handle = pg.guard_function(f"{name}:late_lookup", collected_for=("recruitment",))
    from tests.fixtures_pkg import late

    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        late.late_lookup("a")
    with pg.purpose("recruitment"):
        assert late.late_lookup("a") == "a"
    handle.unpatch()


def test_guard_function_rejects_bad_targets() -> None:
    with pytest.raises(pg.ConfigurationError, match=r"pkg\.module:qualname"):
        pg.guard_function("no_colon", collected_for=("x",))


@pytest.mark.usefixtures("isolated")
def test_decision_follows_a_policy_swap_at_once(alj_policy: pg.Policy) -> None:
    pg.configure(policy=alj_policy)

    @pg.accessor(collected_for=("audit",))
    def read() -> str:
        return "x"

    with pg.purpose("audit"):
        assert read() == "x"
        pg.configure(policy=alj_policy.model_copy(update={"version": "2"}))
        assert read() == "x"
        narrower = pg.Policy(
            id="p",
            version="3",
            purposes={"audit": {"description": "a"}, "audit.deep": {"description": "b"}},
        )
        pg.configure(policy=narrower)
        assert read() == "x"
    with pg.purpose("audit.deep"):
        assert read() == "x"
