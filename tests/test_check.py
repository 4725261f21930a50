"""``pg.check``, ``pg.explain`` and ``pg.check_subject``: questions answered from the same rules
as a use, cached beside the policy they were asked under, never stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest

import purposeguard as pg


@pytest.fixture
def two_policies(isolated: None) -> tuple[pg.Policy, pg.Policy]:
    first = pg.testing.make_policy(["recruitment.selection", "marketing"], id="first")
    second = pg.testing.make_policy(
        ["recruitment.selection", "marketing"],
        id="second",
        compatible={"marketing": ["recruitment"]},
    )
    return first, second


def test_an_answer_is_never_served_from_an_earlier_policy(
    two_policies: tuple[pg.Policy, pg.Policy],
) -> None:
    first, second = two_policies
    collected = ("recruitment",)
    pg.configure(policy=first)
    assert not pg.check("marketing", collected_for=collected).allowed
    pg.configure(policy=second)
    decision = pg.check("marketing", collected_for=collected)
    assert (decision.allowed, decision.policy_id, decision.rule.through) == (
        True,
        "second",
        "recruitment",
    )
    pg.configure(policy=first)
    assert not pg.check("marketing", collected_for=collected).allowed


def test_a_list_a_tuple_and_the_same_tuple_again_get_the_same_answer(
    two_policies: tuple[pg.Policy, pg.Policy],
) -> None:
    pg.configure(policy=two_policies[0])
    same = ("recruitment",)
    answers = {
        pg.check("recruitment.selection", collected_for=same),
        pg.check("recruitment.selection", collected_for=same),
        pg.check("recruitment.selection", collected_for=("recruitment",)),
        pg.check("recruitment.selection", collected_for=["recruitment"]),
    }
    assert len(answers) == 1
    assert next(iter(answers)).allowed


def test_ten_thousand_distinct_purposes_are_each_answered_right(isolated: None) -> None:
    ids = [f"p{i}" for i in range(100)] + [f"p{i}.c{j}" for i in range(100) for j in range(99)]
    pg.configure(policy=pg.testing.make_policy(ids))
    collected = ("p7",)
    for _ in range(2):  # the second time from the cache
        allowed = {p for p in ids if pg.check(p, collected_for=collected).allowed}
        assert allowed == {"p7", *(f"p7.c{j}" for j in range(99))}


def test_check_subject_sees_a_suspension_made_after_an_allowed_answer(isolated: None) -> None:
    pg.configure(policy=pg.testing.make_policy(["inquiry", "marketing"]))
    registry = pg.Registry(refresh_interval=None)
    pg.configure(registry=registry)
    ask = {"subject": "s1", "collected_for": ("inquiry",)}
    assert pg.check_subject("inquiry", **ask).allowed  # type: ignore[arg-type]
    registry.suspend_use("s1", ["inquiry"])
    decision = pg.check_subject("inquiry", **ask)  # type: ignore[arg-type]
    assert (decision.allowed, decision.reason) == (False, "suspended")
    registry.resume_use("s1")
    registry.grant_consent("s1", purposes=["marketing"])
    widened = pg.check_subject("marketing", **ask)  # type: ignore[arg-type]
    assert (widened.allowed, widened.reason) == (True, "consent")
    registry.close()


def test_check_subject_counts_retention_from_collection_only_when_asked(isolated: None) -> None:
    pg.configure(policy=pg.testing.make_policy(["inquiry"]))

    class Inquiry(pg.GuardedModel):
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    now = datetime(2026, 6, 1, tzinfo=UTC)
    field = (Inquiry, "email")
    with pg.testing.retention_clock(lambda: now):
        fresh = pg.check_subject("inquiry", subject=None, field=field, collected_at=now)
        old = now - timedelta(days=31)
        stale = pg.check_subject("inquiry", subject=None, field=field, collected_at=old)
        timeless = pg.check_subject("inquiry", subject=None, field=field)
    assert (fresh.reason, stale.reason, timeless.reason) == ("allowed", "expired", "allowed")


def test_explain_names_the_rule_of_a_strict_category(isolated: None) -> None:
    base = pg.testing.make_policy(["tax.withholding", "audit"], compatible={"audit": ["tax"]})
    policy = pg.Policy(
        id="p",
        version="1",
        purposes=base.purposes,
        categories={"mn": pg.Category(description="My Number", strict=True, purposes=["tax"])},
    )
    pg.configure(policy=policy)

    class Employee(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax", category="mn")]

    text = pg.explain("audit", field=(Employee, "my_number"))
    assert text.startswith("DENY (strict_category): the field is in strict category 'mn'")
