"""The registry on guarded model reads: a restriction of one subject never slows or blocks the
records of another, and always reaches the records of that subject."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest

import purposeguard as pg


@pytest.fixture
def registry(configured: pg.Policy, isolated: None) -> pg.Registry:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg)
    return reg


def test_a_restricted_subject_blocks_only_its_own_records(registry: pg.Registry) -> None:
    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    mine = Applicant(applicant_id="a-1", email="one@example.com")
    other = Applicant(applicant_id="a-2", email="two@example.com")
    registry.suspend_use("a-1")
    with pg.purpose("recruitment"):
        assert other.email == "two@example.com"
        with pytest.raises(pg.PurposeViolation) as info:
            _ = mine.email
    assert info.value.reason == "suspended"


def test_a_subject_id_that_is_not_a_str_always_takes_the_full_check(
    registry: pg.Registry,
) -> None:
    @pg.guarded
    @dataclasses.dataclass
    class Employee:
        number: Annotated[int, pg.SubjectId]
        name: Annotated[str, pg.CollectedFor("contract")]

    registry.suspend_use("5")
    with pg.purpose("contract"):
        assert Employee(number=6, name="six").name == "six"
        with pytest.raises(pg.PurposeViolation, match="suspended"):
            _ = Employee(number=5, name="five").name


def test_a_record_without_a_subject_is_not_affected_by_the_registry(
    registry: pg.Registry,
) -> None:
    class Inquiry(pg.GuardedModel):
        text: Annotated[str, pg.CollectedFor("inquiry")]

    registry.suspend_use("anyone")
    with pg.purpose("inquiry"):
        assert Inquiry(text="hello").text == "hello"


def test_check_subject_knows_a_models_own_strict_category(registry: pg.Registry) -> None:
    class Employee(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax", category="my_number")]

    registry.grant_consent("e", purposes=["marketing"])
    d = pg.check_subject("marketing", subject="e", field=(Employee, "my_number"))
    assert (d.allowed, d.reason) == (False, "not_allowed")
    ok = pg.check_subject("tax.withholding", subject="e", field=(Employee, "my_number"))
    assert ok.allowed
