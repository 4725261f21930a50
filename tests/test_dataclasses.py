"""``@pg.guarded`` dataclasses: their ``__init__`` (compiled for a plain dataclass, wrapped for
any other), ``__post_init__``, the vault a record keeps its guarded values and facts in, and
the same for a GuardedModel's ``model_post_init``."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from tests.conftest import CANARY

import purposeguard as pg
from purposeguard._sealed import Vault

VAULT = "__purposeguard__"


@pytest.fixture
def policy(isolated: None) -> pg.Policy:
    policy = pg.testing.make_policy(["recruitment", "inquiry", "marketing"])
    pg.configure(policy=policy)
    return policy


def kinds() -> list[Any]:
    return [
        pytest.param(dataclass, id="plain"),
        pytest.param(dataclass(frozen=True), id="frozen"),
        pytest.param(dataclass(slots=True), id="slots"),
        pytest.param(dataclass(kw_only=True), id="kw_only"),
    ]


@pytest.mark.parametrize("make", kinds())
def test_every_kind_of_dataclass_keeps_its_values_in_one_vault(
    policy: pg.Policy, make: Any
) -> None:
    @pg.guarded
    @make
    class Contact:
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("inquiry")]
        note: str = "n"
        tags: list[str] = field(default_factory=list)

    contact = Contact(contact_id="c1", email=CANARY)
    storage = [getattr(contact, n) for n in ("note", "tags", "contact_id")]
    assert storage == ["n", [], "c1"]  # unguarded fields and the subject read as always
    if hasattr(contact, "__dict__"):
        assert "email" not in vars(contact)
        assert isinstance(vars(contact)[VAULT], Vault)
    with pg.purpose("inquiry"):
        assert contact.email == CANARY
        assert dataclasses.asdict(contact)["email"] == CANARY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = contact.email
    assert "canary" not in repr(contact)
    for copied in (copy.copy(contact), copy.deepcopy(contact)):
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            _ = copied.email
        with pg.purpose("inquiry"):
            assert copied.email == CANARY
    with pg.purpose("inquiry"), pytest.raises(pg.SealedPickleError):
        pickle.dumps(contact.__getstate__())  # what pickling the record pickles: its vault
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as refused:
        pickle.dumps(contact.__getstate__())
    assert refused.value.channel == "pickle"


def test_post_init_runs_once_the_record_is_sealed_and_its_reads_are_checked(
    policy: pg.Policy,
) -> None:
    seen: list[str] = []

    @pg.guarded
    @dataclass
    class Applicant:
        email: Annotated[str, pg.CollectedFor("recruitment")]
        domain: str = ""

        def __post_init__(self) -> None:
            with pg.purpose("recruitment"):
                self.domain = self.email.rpartition("@")[2]
            seen.append(self.domain)

    with pg.testing.capture_violations() as events:
        applicant = Applicant(CANARY)
    assert (seen, events) == (["example.com"], [])

    @pg.guarded
    @dataclass
    class Careless:
        email: Annotated[str, pg.CollectedFor("recruitment")]

        def __post_init__(self) -> None:
            _ = self.email  # no purpose: refused like any read

    with pytest.raises(pg.PurposeViolation, match="no active purpose"):
        Careless(CANARY)
    assert applicant.domain == "example.com"


def test_a_dataclass_with_an_initvar_keeps_its_own_init(policy: pg.Policy) -> None:
    @pg.guarded
    @dataclass
    class Applicant:
        email: Annotated[str, pg.CollectedFor("recruitment")]
        raw: InitVar[str] = ""
        cleaned: str = ""

        def __post_init__(self, raw: str) -> None:
            self.cleaned = raw.strip()

    applicant = Applicant(CANARY, raw="  x ")
    assert applicant.cleaned == "x"
    with pg.purpose("recruitment"):
        assert applicant.email == CANARY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = applicant.email


def test_assigning_a_fact_of_a_dataclass_is_in_force_at_the_next_read(policy: pg.Policy) -> None:
    @pg.guarded
    @dataclass
    class Contact:
        email: Annotated[str, pg.CollectedFor("inquiry")]
        consent: Annotated[frozenset[str], pg.Consent] = frozenset()

    contact = Contact(CANARY)
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = contact.email
    contact.consent = frozenset({"marketing"})
    assert contact.consent == frozenset({"marketing"})
    with pg.purpose("marketing"):
        assert contact.email == CANARY
        assert vars(contact)[VAULT] == CANARY  # the vault itself knows the new fact too
    contact.consent = frozenset()
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = vars(contact)[VAULT] == CANARY


def test_an_assigned_or_deleted_value_is_a_new_vault_copies_do_not_share(
    policy: pg.Policy,
) -> None:
    @pg.guarded
    @dataclass
    class Contact:
        email: Annotated[str, pg.CollectedFor("inquiry")]

    contact = Contact("old@example.com")
    twin = copy.copy(contact)
    contact.email = CANARY
    with pg.purpose("inquiry"):
        assert (contact.email, twin.email) == (CANARY, "old@example.com")
    del contact.email
    with pg.purpose("inquiry"), pytest.raises(AttributeError):
        _ = contact.email


def test_a_retained_dataclass_field_counts_from_its_collection_time(policy: pg.Policy) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    @pg.guarded
    @dataclass
    class Inquiry:
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    record = Inquiry(now - timedelta(days=10), CANARY)
    with pg.testing.retention_clock(lambda: now), pg.purpose("inquiry"):
        assert record.email == CANARY
        record.collected_at = now - timedelta(days=40)
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = record.email
    with pytest.raises(ValueError, match="timezone-aware"):
        Inquiry(datetime(2026, 1, 1), CANARY)


def test_a_models_own_model_post_init_runs_after_sealing(policy: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]
        domain: str = ""

        def model_post_init(self, context: Any, /) -> None:
            assert isinstance(vars(self)["email"], Vault)  # sealed before it runs
            with pg.purpose("recruitment"):
                self.domain = self.email.rpartition("@")[2]

    class Child(Applicant):
        pass

    for cls in (Applicant, Child):
        record = cls(email=CANARY)
        assert record.domain == "example.com"
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            _ = record.email


def test_a_model_that_pydantic_passes_through_is_not_sealed_again(policy: pg.Policy) -> None:
    from pydantic import TypeAdapter

    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    records = [Applicant(email=CANARY) for _ in range(3)]
    vaults = [vars(r)["email"] for r in records]
    assert TypeAdapter(list[Applicant]).validate_python(records) == records
    assert [vars(r)["email"] for r in records] == vaults
    assert all(a is b for a, b in zip((vars(r)["email"] for r in records), vaults, strict=True))
