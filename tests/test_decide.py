"""The reference decision and the compiled fast path agree with every shared vector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._compile import Tag, compile_policy
from purposeguard._decide import Rule, decide

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "decisions.json").read_text()
)["cases"]


def _policy(case: dict[str, Any]) -> pg.Policy:
    return pg.Policy(
        id="vectors",
        version="1",
        purposes={
            p: pg.Purpose(description=p, compatible_with=tuple(case["compatible_with"].get(p, ())))
            for p in case["purposes"]
        },
    )


def test_there_are_671_vectors() -> None:
    assert len(CASES) == 671


@pytest.mark.parametrize("case", CASES)
def test_reference_decision_matches_vector(case: dict[str, Any]) -> None:
    decision = decide(
        case["purpose"],
        case["collected_for"],
        case["prohibited"],
        frozenset(case["purposes"]),
        case["compatible_with"],
    )
    assert (case["allowed"], case["reason"]) == (decision.allowed, decision.reason)


@pytest.mark.parametrize("case", CASES)
def test_compiled_allow_set_and_check_match_vector(case: dict[str, Any]) -> None:
    policy = _policy(case)
    compiled = compile_policy(policy)
    allowed = compiled.allowed_set(Tag.of(case["collected_for"], case["prohibited"]))
    assert case["allowed"] == (case["purpose"] in allowed)
    decision = pg.check(
        case["purpose"],
        collected_for=tuple(case["collected_for"]),
        prohibited=tuple(case["prohibited"]),
        policy=policy,
    )
    assert (case["allowed"], case["reason"]) == (decision.allowed, decision.reason)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("case", CASES[::7])
def test_guarded_accessor_matches_vector(case: dict[str, Any]) -> None:
    pg.configure(policy=_policy(case), mode="monitor")

    @pg.accessor(collected_for=case["collected_for"], prohibited=case["prohibited"])
    def read() -> str:
        return "value"

    def call() -> list[dict[str, Any]]:
        with pg.testing.capture_violations() as events:
            assert read() == "value"
        return events

    if case["purpose"] is None:
        events = call()
    elif case["reason"] == "unknown_purpose":
        with pg.purpose(case["purpose"]):
            events = call()
    else:
        with pg.purpose(case["purpose"]):
            events = call()
    assert case["allowed"] == (events == [])
    if events:
        assert case["reason"] == events[0]["reason"]


def test_decision_is_frozen_and_explains_its_rule(configured: pg.Policy) -> None:
    decision = pg.check("audit", collected_for=("inquiry",))
    assert decision.allowed
    assert decision.rule == Rule("allowed", matched="inquiry", through="inquiry")
    assert decision.policy_version == "2024-09-01"
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]


def test_check_never_raises_on_bad_input(configured: pg.Policy) -> None:
    assert pg.check("Not A Purpose", collected_for=("recruitment",)).reason == "unknown_purpose"
    assert pg.check(None, collected_for=("recruitment",)).reason == "no_purpose"
    assert pg.check("recruitment", collected_for=("nope",)).reason == "invalid_tag"
    assert pg.check("recruitment", collected_for=["recruitment"]).allowed  # type: ignore[arg-type]
    assert pg.check(["x"], collected_for=("recruitment",)).reason == "unknown_purpose"  # type: ignore[arg-type]


def test_check_without_policy_denies_with_no_policy() -> None:
    decision = pg.check("recruitment", collected_for=("recruitment",))
    assert (decision.allowed, decision.reason) == (False, "no_policy")


def test_malformed_purpose_never_reaches_the_decision() -> None:
    decision = pg.check("x" * 500, collected_for=("a",), policy=pg.testing.make_policy(["a"]))
    assert decision.purpose is None
    assert decision.reason == "unknown_purpose"


@pytest.mark.parametrize(
    ("purpose", "expected"),
    [
        ("recruitment.selection", "ALLOW: 'recruitment.selection' is 'recruitment' or below it."),
        ("marketing", "DENY (not_allowed): 'marketing' is not one of the allowed purposes"),
        (None, "DENY (no_purpose): no purpose is active; declare one with pg.purpose(...)"),
        ("nope", "DENY (unknown_purpose): 'nope' is not declared in the policy"),
    ],
)
def test_explain_says_why(configured: pg.Policy, purpose: str | None, expected: str) -> None:
    text = pg.explain(purpose, collected_for=("recruitment",))
    assert text.startswith(expected)
    assert "alj-privacy@2024-09-01" in text


def test_explain_prohibited_and_compatible(configured: pg.Policy) -> None:
    assert "prohibited" in pg.explain(
        "marketing.events", collected_for=("marketing", "inquiry"), prohibited=("marketing",)
    )
    assert "through its compatibility with 'inquiry'" in pg.explain(
        "audit", collected_for=("inquiry",)
    )
