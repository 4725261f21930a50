"""Property tests: the compiled, cached engine equals the reference decision on random policies."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import purposeguard as pg
from purposeguard._compile import Tag, compile_policy
from purposeguard._decide import decide

SEGMENTS = ["a", "b", "c"]


@st.composite
def purpose_trees(draw: st.DrawFn) -> list[str]:
    leaves = draw(
        st.lists(
            st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map(".".join),
            min_size=1,
            max_size=8,
        )
    )
    ids: set[str] = set()
    for leaf in leaves:
        parts = leaf.split(".")
        ids.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(ids)


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    purposes = draw(purpose_trees())
    compatible: dict[str, list[str]] = {}
    for x in purposes:
        others = [p for p in purposes if p != x]
        if others and draw(st.booleans()) and draw(st.booleans()):
            compatible[x] = draw(
                st.lists(st.sampled_from(others), min_size=1, max_size=2, unique=True)
            )
    collected = draw(st.lists(st.sampled_from(purposes), max_size=3, unique=True))
    prohibited = draw(st.lists(st.sampled_from(purposes), max_size=2, unique=True))
    return {"purposes": purposes, "compatible": compatible, "A": collected, "P": prohibited}


def build(world: dict[str, Any], order: random.Random | None = None) -> pg.Policy:
    ids = list(world["purposes"])
    if order is not None:
        order.shuffle(ids)
    return pg.Policy(
        id="prop",
        version="1",
        purposes={
            p: pg.Purpose(description=p, compatible_with=tuple(world["compatible"].get(p, ())))
            for p in ids
        },
    )


def reference(world: dict[str, Any], purpose: str | None, A: Any = None, P: Any = None) -> Any:
    return decide(
        purpose,
        world["A"] if A is None else A,
        world["P"] if P is None else P,
        frozenset(world["purposes"]),
        world["compatible"],
    )


def candidates(world: dict[str, Any]) -> list[str | None]:
    return [*world["purposes"], None, "zz", "a.zz"]


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_compiled_equals_reference(world: dict[str, Any]) -> None:
    policy = build(world)
    allowed = compile_policy(policy).allowed_set(Tag.of(world["A"], world["P"]))
    for purpose in candidates(world):
        expected = reference(world, purpose)
        assert expected.allowed == (purpose in allowed)
        got = pg.check(
            purpose, collected_for=tuple(world["A"]), prohibited=tuple(world["P"]), policy=policy
        )
        assert (expected.allowed, expected.reason) == (got.allowed, got.reason)


@settings(max_examples=200, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_order_of_declarations_never_matters(world: dict[str, Any], rnd: random.Random) -> None:
    one = compile_policy(build(world)).allowed_set(Tag.of(world["A"], world["P"]))
    shuffled = compile_policy(build(world, rnd)).allowed_set(
        Tag.of(rnd.sample(world["A"], len(world["A"])), rnd.sample(world["P"], len(world["P"])))
    )
    assert one == shuffled


@settings(max_examples=200, deadline=None)
@given(worlds(), st.data())
def test_adding_an_allowed_purpose_never_turns_allow_into_deny(
    world: dict[str, Any], data: st.DataObject
) -> None:
    extra = data.draw(st.sampled_from(world["purposes"]))
    for purpose in candidates(world):
        if reference(world, purpose).allowed:
            assert reference(world, purpose, A=[*world["A"], extra]).allowed


@settings(max_examples=200, deadline=None)
@given(worlds(), st.data())
def test_adding_a_prohibition_never_turns_deny_into_allow(
    world: dict[str, Any], data: st.DataObject
) -> None:
    extra = data.draw(st.sampled_from(world["purposes"]))
    compiled = compile_policy(build(world))
    for purpose in candidates(world):
        if not reference(world, purpose).allowed:
            assert not reference(world, purpose, P=[*world["P"], extra]).allowed
            assert purpose not in compiled.allowed_set(Tag.of(world["A"], [*world["P"], extra]))


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_default_deny(world: dict[str, Any]) -> None:
    compiled = compile_policy(build(world))
    assert not reference(world, None).allowed
    assert reference(world, "zz").reason == "unknown_purpose"
    assert compiled.allowed_set(Tag.of([], world["P"])) == frozenset()
    for purpose in world["purposes"]:
        assert not reference(world, purpose, A=[]).allowed


class ReloadingEngine(RuleBasedStateMachine):
    """Random policy reloads, accessor definitions and calls; every call must agree with the
    reference decision under the policy in force, and a rejected policy must change nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.world: dict[str, Any] = {}
        self.accessors: list[tuple[Any, list[str], list[str]]] = []

    @initialize(world=worlds())
    def start(self, world: dict[str, Any]) -> None:
        self.isolation = pg.testing.isolated_guards()
        self.isolation.__enter__()
        pg.testing.reset()
        pg.configure(policy=build(world), mode="monitor")
        self.world = world

    @rule(world=worlds())
    def reload(self, world: dict[str, Any]) -> None:
        needed = {p for _, A, P in self.accessors for p in (*A, *P)}
        try:
            pg.configure(policy=build(world))
        except pg.PolicyError:
            assert not needed <= set(world["purposes"])  # rejected only for a real reason
            return
        assert needed <= set(world["purposes"])
        self.world = world

    @rule(data=st.data())
    def define(self, data: st.DataObject) -> None:
        purposes = self.world["purposes"]
        A = data.draw(st.lists(st.sampled_from(purposes), min_size=1, max_size=3, unique=True))
        P = data.draw(st.lists(st.sampled_from(purposes), max_size=2, unique=True))

        @pg.accessor(collected_for=A, prohibited=P)
        def read() -> str:
            return "value"

        self.accessors.append((read, A, P))

    @rule(data=st.data())
    def call(self, data: st.DataObject) -> None:
        if not self.accessors:
            return
        read, A, P = data.draw(st.sampled_from(self.accessors))
        purpose = data.draw(st.sampled_from(candidates(self.world)))
        with pg.testing.capture_violations() as events:
            if purpose is None:
                assert read() == "value"
            else:
                with pg.purpose(purpose):
                    assert read() == "value"
        expected = reference(self.world, purpose, A=A, P=P)
        assert expected.allowed == (events == [])
        if events:
            assert expected.reason == events[0]["reason"]

    @invariant()
    def policy_in_force_is_the_last_good_one(self) -> None:
        if self.world:
            policy = pg.get_policy()
            assert policy is not None
            assert sorted(policy.purposes) == self.world["purposes"]

    def teardown(self) -> None:
        self.accessors.clear()
        pg.testing.reset()
        if hasattr(self, "isolation"):
            self.isolation.__exit__(None, None, None)


@pytest.mark.usefixtures("isolated")
def test_stateful_reloads() -> None:
    ReloadingEngine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    ReloadingEngine.TestCase().runTest()
