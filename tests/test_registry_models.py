"""The registry on guarded model reads: a restriction of one subject never slows or blocks the
records of another, and always reaches the records of that subject."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import pytest

import purposeguard as pg
from purposeguard.stores import ConsentRow, ProvisionRecord, Snapshot, SuspensionRow
from purposeguard.stores.memory import MemoryStore


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


class CountingStore(MemoryStore):
    """A memory store that counts every read the registry makes of it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def consents(self, subject: str) -> list[ConsentRow]:
        self.reads.append("consents")
        return super().consents(subject)

    def suspensions(self, subject: str) -> list[SuspensionRow]:
        self.reads.append("suspensions")
        return super().suspensions(subject)

    def version(self) -> int:
        self.reads.append("version")
        return super().version()

    def snapshot(self) -> Snapshot:
        self.reads.append("snapshot")
        return super().snapshot()

    def changes_since(self, version: int) -> tuple[int, frozenset[str]] | None:
        self.reads.append("changes_since")
        return super().changes_since(version)

    def flags(self, subjects: frozenset[str]) -> dict[str, tuple[bool, bool]]:
        self.reads.append("flags")
        return super().flags(subjects)

    def provisions(self, subject: str) -> list[ProvisionRecord]:
        self.reads.append("provisions")
        return super().provisions(subject)


def test_the_fast_path_never_reads_the_store_for_an_unrestricted_subject(
    configured: pg.Policy, isolated: None
) -> None:
    store = CountingStore()
    reg = pg.Registry(store, refresh_interval=None)
    pg.configure(registry=reg)

    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    @pg.guarded
    @dataclasses.dataclass
    class Visitor:
        visitor_id: Annotated[str, pg.SubjectId]
        name: Annotated[str, pg.CollectedFor("security")]

    reg.suspend_use("restricted-1")  # someone is restricted, so the registry is not empty
    reg.grant_consent("consenting-1", purposes=["marketing"])
    alice = Applicant(applicant_id="alice", email="alice@example.com")
    visitor = Visitor("alice", "Alice")
    store.reads.clear()
    for _ in range(3):
        with pg.purpose("recruitment.selection"):
            assert alice.email == "alice@example.com"
            assert alice.model_dump()["email"] == "alice@example.com"
            d = pg.check_subject("recruitment", subject="alice", collected_for=("recruitment",))
            assert d.allowed
        with pg.purpose("security"):
            assert visitor.name == "Alice"
        # a denial for a subject with neither restrictions nor consents: no lookup either
        d = pg.check_subject("marketing", subject="alice", collected_for=("recruitment",))
        assert (d.allowed, d.reason) == (False, "not_allowed")
    assert store.reads == []

    # the counter does count: the restricted subject's record is looked up (once, then cached)
    bob = Applicant(applicant_id="restricted-1", email="bob@example.com")
    with pg.purpose("recruitment"), pytest.raises(pg.PurposeViolation, match="suspended"):
        _ = bob.email
    assert {"consents", "suspensions"} <= set(store.reads)
