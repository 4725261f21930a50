"""Random nested models with random tags under random policies agree with the reference decision
(``_decide.decide_rule``): on attribute reads, on dumps of the parent, and with consent."""

from __future__ import annotations

from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import create_model

import purposeguard as pg
from purposeguard._decide import decide_rule
from purposeguard._ids import ancestors

UNIVERSE = ("a", "a.b", "a.c", "a.b.d", "e", "e.f", "g", "g.h")


@st.composite
def policies(draw: st.DrawFn) -> pg.Policy:
    chosen = set(draw(st.lists(st.sampled_from(UNIVERSE), min_size=1, max_size=len(UNIVERSE))))
    for pid in list(chosen):
        chosen.update(ancestors(pid))
    ids = sorted(chosen)
    compatible: dict[str, list[str]] = {}
    for x in ids:
        others = [y for y in ids if y != x]
        if others and draw(st.booleans()):
            compatible[x] = sorted(set(draw(st.lists(st.sampled_from(others), max_size=2))))
    return pg.testing.make_policy(ids, compatible=compatible)


@st.composite
def tags(draw: st.DrawFn, ids: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allowed = tuple(sorted(set(draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3)))))
    prohibited = tuple(sorted(set(draw(st.lists(st.sampled_from(ids), max_size=2)))))
    return allowed, prohibited


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    policy = draw(policies())
    ids = sorted(policy.purposes)
    return {
        "policy": policy,
        "inner": [draw(tags(ids)) for _ in range(2)],
        "outer": draw(tags(ids)),
        "consent": tuple(sorted(set(draw(st.lists(st.sampled_from(ids), max_size=2))))),
        "purpose": draw(st.sampled_from([*ids, "unknown.purpose", None])),
    }


def reference(
    purpose: str | None, tag: tuple[tuple[str, ...], tuple[str, ...]], policy: pg.Policy
) -> bool:
    compatible = {p: spec.compatible_with for p, spec in policy.purposes.items()}
    rule = decide_rule(purpose, tag[0], tag[1], set(policy.purposes), compatible)
    return rule.kind == "allowed"


def outcome(fn: Any) -> bool:
    try:
        fn()
    except pg.PurposeViolation:
        return False
    return True


def run(purpose: str | None, fn: Any) -> bool:
    if purpose is None:
        return outcome(fn)
    with pg.purpose(purpose):
        return outcome(fn)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_nested_models_agree_with_the_reference(scenario: dict[str, Any]) -> None:
    policy = scenario["policy"]
    with pg.testing.isolated_guards():
        pg.configure(policy=policy)
        (a0, p0), (a1, p1) = scenario["inner"]
        Inner = create_model(
            "Inner",
            __base__=pg.GuardedModel,
            x=Annotated[str, pg.CollectedFor(*a0, prohibited=p0)],
            y=Annotated[int, pg.CollectedFor(*a1, prohibited=p1)],
            consent=(Annotated[frozenset[str], pg.Consent], frozenset()),
        )
        oa, op = scenario["outer"]
        Outer = create_model(
            "Outer",
            __base__=pg.GuardedModel,
            z=Annotated[str, pg.CollectedFor(*oa, prohibited=op)],
            children=(list[Inner], ...),  # type: ignore[valid-type]
        )
        purpose = scenario["purpose"]
        inner = Inner(x="secret", y=7)
        outer = Outer(z="secret", children=[inner])
        expect_x = reference(purpose, scenario["inner"][0], policy)
        expect_y = reference(purpose, scenario["inner"][1], policy)
        expect_z = reference(purpose, scenario["outer"], policy)
        assert expect_x == run(purpose, lambda: inner.x)
        assert expect_y == run(purpose, lambda: inner.y)
        assert expect_z == run(purpose, lambda: outer.z)
        assert (expect_x and expect_y and expect_z) == run(purpose, outer.model_dump)
        assert (expect_x and expect_y and expect_z) == run(purpose, outer.model_dump_json)

        # consent widens A (never P) for this record only
        consent = scenario["consent"]
        consenting = Inner(x="secret", y=7, consent=frozenset(consent))
        widened = ((*a0, *consent), p0)
        assert reference(purpose, widened, policy) == run(purpose, lambda: consenting.x)
        assert expect_x == run(purpose, lambda: inner.x)
