"""Guarded pydantic models and dataclasses: tagging, reads, consent, strict categories, subject
ids, copies, pickling and the dump options. Channels end to end are in test_leak_matrix.py."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import linecache
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticSerializationError
from tests.conftest import CANARY, with_policy

import purposeguard as pg
from purposeguard._events import subject_hash
from purposeguard._sealed import Sealed, Vault

VAULT = "__purposeguard__"  # where a guarded dataclass keeps its guarded values

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _own_guards(isolated: None) -> None:
    """Classes defined in a test bind only while it runs (other tests configure other policies)."""


def test_reading_a_guarded_field_checks_the_active_purpose(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        applicant_id: str
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]

    applicant = Applicant(applicant_id="a1", email=CANARY)
    with pg.purpose("recruitment.selection"):
        assert applicant.email == CANARY
    with pg.purpose("inquiry"):
        assert applicant.email == CANARY
    assert applicant.applicant_id == "a1"  # untagged: not guarded
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as caught:
        _ = applicant.email
    assert (
        caught.value.purpose,
        caught.value.reason,
        caught.value.channel,
    ) == ("marketing", "not_allowed", "attribute")
    assert caught.value.field.endswith(
        "test_models.test_reading_a_guarded_field_checks_the_active_purpose.<locals>.Applicant.email"
    )  # type: ignore[union-attr]
    assert CANARY not in str(caught.value)
    with pytest.raises(pg.PurposeViolation, match="no active purpose"):
        _ = applicant.email


def test_a_violation_is_neither_attribute_error_nor_swallowed_by_getattr(
    configured: pg.Policy,
) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    with pytest.raises(pg.PurposeViolation):
        getattr(applicant, "email", None)
    with pytest.raises(pg.PurposeViolation):
        hasattr(applicant, "email")


def test_monitor_mode_returns_the_value_and_records_the_violation(alj_policy: pg.Policy) -> None:
    pg.configure(policy=alj_policy, mode="monitor")

    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert applicant.email == CANARY
    assert [(e["mode"], e["enforced"], e["channel"]) for e in events] == [
        ("monitor", False, "attribute")
    ]


def test_a_field_mode_override_applies(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment", mode="monitor")]

    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert Applicant(email=CANARY).email == CANARY
    assert [e["mode"] for e in events] == ["monitor"]


def test_validation_and_assignment_are_not_reads(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        model_config = ConfigDict(validate_assignment=True)
        email: Annotated[str, pg.CollectedFor("recruitment")]

    with pg.testing.capture_violations() as events:
        applicant = Applicant.model_validate({"email": "a@example.com"})
        Applicant.model_validate_json('{"email": "b@example.com"}')
        applicant.email = CANARY
    assert events == []
    assert isinstance(vars(applicant)["email"], Vault)
    with pg.purpose("recruitment"):
        assert applicant.email == CANARY


def test_plain_assignment_seals_too(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email="a@example.com")
    applicant.email = CANARY
    assert repr(vars(applicant)["email"]) == "<guarded>"
    object.__setattr__(applicant, "email", CANARY)  # the descriptor's __set__ seals as well
    assert isinstance(vars(applicant)["email"], Vault)


def test_the_class_table_feeds_check_and_accessor(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        applicant_id: str
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        my_number: Annotated[str, pg.CollectedFor("tax.withholding", prohibited=("marketing",))]

    assert {"email", "my_number"} == set(Applicant.__purposeguard_fields__)
    assert Applicant.__purposeguard_fields__["email"].collected_for == ("inquiry", "recruitment")
    assert pg.check("recruitment.selection", field=(Applicant, "email")).allowed
    assert not pg.check("marketing", field=(Applicant, "email")).allowed

    @pg.accessor(fields=[(Applicant, "email")])
    def load_email() -> str:
        return CANARY

    with pg.purpose("inquiry"):
        assert load_email() == CANARY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        load_email()


def test_purposes_of_lists_what_a_field_may_be_used_for(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("inquiry")]

    # audit is declared compatible_with inquiry in the reference policy
    assert frozenset({"inquiry", "audit"}) == pg.purposes_of(Applicant, "email")
    with pytest.raises(pg.ConfigurationError):
        pg.purposes_of(Applicant, "nope")


def test_a_malformed_purpose_is_an_error_at_the_marker() -> None:
    with pytest.raises(pg.ConfigurationError, match="not a purpose id"):
        pg.CollectedFor("Recruitment")
    with pytest.raises(pg.ConfigurationError, match="at least one purpose"):
        pg.CollectedFor()
    with pytest.raises(pg.ConfigurationError, match="category"):
        pg.CollectedFor("tax", category="My Number")


def test_an_unknown_purpose_is_an_error_when_the_class_is_defined(configured: pg.Policy) -> None:
    with pytest.raises(pg.PolicyError, match="nonexistent"):

        class Applicant(pg.GuardedModel):
            email: Annotated[str, pg.CollectedFor("nonexistent")]


def test_a_policy_that_drops_a_used_purpose_is_refused_and_the_last_good_stays(
    configured: pg.Policy,
) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    with pytest.raises(pg.PolicyError, match="recruitment"):
        pg.configure(policy=pg.testing.make_policy(["marketing"]))
    assert configured is pg.get_policy()
    with pg.purpose("recruitment"):
        assert applicant.email == CANARY


def test_no_policy_denies_everything() -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    with pg.purpose("recruitment"), pytest.raises(pg.PurposeViolation) as caught:
        _ = Applicant(email=CANARY).email
    assert caught.value.reason == "no_policy"


def test_optional_inherited_generic_and_frozen_models(configured: pg.Policy) -> None:
    class Base(pg.GuardedModel):
        email: Annotated[str | None, pg.CollectedFor("recruitment")] = None

    class Child(Base):
        phone: Annotated[str, pg.CollectedFor("inquiry")] = "000"

    class Page(pg.GuardedModel, Generic[T]):
        owner: Annotated[str, pg.CollectedFor("recruitment")]
        items: list[T]

    class Frozen(pg.GuardedModel):
        model_config = ConfigDict(frozen=True)
        email: Annotated[str, pg.CollectedFor("recruitment")]

    assert {"email", "phone"} == set(Child.__purposeguard_fields__)
    child = Child(email=CANARY)
    page = Page[int](owner=CANARY, items=[1])
    frozen = Frozen(email=CANARY)
    assert vars(Base())["email"] is None  # None stays None: exclude_none must still see it
    with pg.purpose("recruitment"):
        assert child.email == CANARY
        assert page.owner == CANARY
        assert page.model_dump() == {"owner": CANARY, "items": [1]}
        assert hash(frozen) == hash(Frozen(email=CANARY))
        assert Base().model_dump(exclude_none=True) == {}
        with pytest.raises(pg.PurposeViolation):
            _ = child.phone
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        hash(frozen)
    assert "Page.owner" in Page.__purposeguard_layout__.guards["owner"].name
    assert "[int]" not in type(page).__purposeguard_layout__.guards["owner"].name


def test_nested_lists_and_dicts_of_models(configured: pg.Policy) -> None:
    class Contact(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Book(BaseModel):  # a plain parent
        contacts: list[Contact]
        by_name: dict[str, Contact]
        maybe: Contact | None = None

    book = Book.model_validate(
        {"contacts": [{"email": CANARY}], "by_name": {"a": {"email": CANARY}}}
    )
    with pg.purpose("recruitment"):
        assert book.by_name["a"].email == CANARY
        assert book.model_dump() == {
            "contacts": [{"email": CANARY}],
            "by_name": {"a": {"email": CANARY}},
            "maybe": None,
        }
    with pg.purpose("marketing"), pytest.raises(Exception, match="PurposeViolation"):
        book.model_dump_json()


def test_dump_options_keep_working_and_defaults_are_not_reads(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        purposeguard_on_denied = "omit"
        email: Annotated[str, pg.CollectedFor("recruitment")] = "unknown"
        tags: Annotated[list[str], pg.CollectedFor("recruitment")] = Field(default_factory=list)
        note: str = "n"

    at_default = Applicant()
    changed = Applicant(email=CANARY, tags=["x"])
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert at_default.model_dump(exclude_defaults=True) == {}
        assert at_default.model_dump(exclude_unset=True) == {}
    assert events == []  # comparing with the public default is not a read
    with pg.purpose("recruitment"):
        assert changed.model_dump(exclude_defaults=True) == {"email": CANARY, "tags": ["x"]}
        assert changed.model_dump(exclude_unset=True) == {"email": CANARY, "tags": ["x"]}
        assert changed.model_dump(include={"email"}) == {"email": CANARY}
        assert changed.model_dump(exclude={"email", "tags"}) == {"note": "n"}


def test_on_denied_redact_and_omit(configured: pg.Policy) -> None:
    class Redacted(pg.GuardedModel):
        purposeguard_on_denied = "redact"
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Omitted(pg.GuardedModel):
        purposeguard_on_denied = "omit"
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert Redacted(name="n", email=CANARY).model_dump() == {"name": "n", "email": None}
        assert Omitted(name="n", email=CANARY).model_dump() == {"name": "n"}
        assert Omitted(name="n", email=CANARY).model_dump_json() == '{"name":"n"}'
    assert [(e["channel"], e["enforced"]) for e in events] == [("dump", True)] * 3
    pg.configure(mode="monitor")  # monitor: the value passes, recorded once
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert Omitted(name="n", email=CANARY).model_dump() == {"name": "n", "email": CANARY}
    assert [e["channel"] for e in events] == ["dump"]


def test_bad_class_options_are_configuration_errors(configured: pg.Policy) -> None:
    with pytest.raises(pg.ConfigurationError, match="on_denied"):

        class Bad(pg.GuardedModel):
            purposeguard_on_denied = "drop"  # type: ignore[assignment]
            email: Annotated[str, pg.CollectedFor("recruitment")]


def test_the_purpose_comes_from_the_context_never_from_a_serialization_context(
    configured: pg.Policy,
) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Folder(BaseModel):
        item: Applicant

    applicant = Applicant(email=CANARY)
    claims: list[dict[str, object]] = [
        {"purpose": "recruitment"},
        {"purposeguard": {"purpose": "recruitment"}},
        {"purposeguard.purpose": "recruitment", "active_purpose": "recruitment"},
    ]
    adapter = TypeAdapter(Applicant)
    folder = Folder(item=applicant)
    dumps: list[Callable[[dict[str, object]], object]] = [
        lambda claim: applicant.model_dump(context=claim),
        lambda claim: applicant.model_dump_json(context=claim),
        lambda claim: adapter.dump_python(applicant, context=claim),
        lambda claim: adapter.dump_json(applicant, context=claim),
        lambda claim: folder.model_dump(context=claim),
    ]
    for claim in claims:
        for dump in dumps:
            for purpose in (None, "marketing"):
                with pg.testing.capture_violations() as events, contextlib.ExitStack() as stack:
                    if purpose is not None:
                        stack.enter_context(pg.purpose(purpose))
                    with pytest.raises((pg.PurposeViolation, PydanticSerializationError)):
                        dump(claim)
                assert [e["purpose"] for e in events] == [purpose]
    with pg.purpose("recruitment"):  # the purpose context, and only it, allows the dump
        assert applicant.model_dump(context={"purpose": "marketing"}) == {"email": CANARY}


def test_copies_keep_their_tags_and_stay_sealed(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        name: str = "n"
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    with pg.testing.capture_violations() as events:
        copies = [
            copy.copy(applicant),
            copy.deepcopy(applicant),
            applicant.model_copy(),
            applicant.model_copy(update={"name": "m"}, deep=True),
            applicant.model_copy(update={"email": CANARY}),
            Applicant.model_construct(**vars(applicant)),
            Applicant.model_construct(email=CANARY),
        ]
    assert events == []
    for item in copies:
        assert isinstance(vars(item)["email"], Vault)
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            _ = item.email
        with pg.purpose("recruitment"):
            assert item.email == CANARY


def test_a_value_moved_into_another_field_must_comply_with_both(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Lead(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment", "marketing")]

    lead = Lead.model_construct(email=vars(Applicant(email=CANARY))["email"])
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as caught:
        _ = lead.email
    assert caught.value.field.endswith("Applicant.email")  # type: ignore[union-attr]
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        lead.model_dump()
    with pg.purpose("recruitment"):
        assert lead.email == CANARY
        assert lead.model_dump() == {"email": CANARY}


def test_pickling_is_refused_unless_the_model_allows_it_under_a_purpose(
    configured: pg.Policy,
) -> None:
    class Refusing(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Allowing(pg.GuardedModel):
        purposeguard_pickle = "purpose"
        email: Annotated[str, pg.CollectedFor("recruitment")]

    with pg.purpose("recruitment"), pytest.raises(pg.SealedPickleError, match="refuses"):
        pickle.dumps(vars(Refusing(email=CANARY)))
    allowing = Allowing(email=CANARY)
    with pg.purpose("recruitment"):
        restored = pickle.loads(pickle.dumps(vars(allowing)))
    assert isinstance(restored["email"], Vault)
    assert restored["email"].shape is vars(allowing)["email"].shape
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as caught:
        pickle.dumps(vars(allowing))
    assert caught.value.channel == "pickle"


def test_a_sealed_value_hides_itself(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    sealed = vars(Applicant(email=CANARY))["email"]
    assert (repr(sealed), str(sealed), f"{sealed:>40}") == ("<guarded>", "<guarded>", "<guarded>")
    assert not hasattr(sealed, "__dict__")
    with pytest.raises(pg.PurposeViolation):
        _ = sealed == CANARY
    with pytest.raises(pg.PurposeViolation):
        _ = sealed != CANARY
    with pg.purpose("recruitment"):
        assert sealed == CANARY
        assert hash(sealed) == hash(CANARY)


# --- consent, strict categories, subjects ---------------------------------------------------------


def test_consent_on_a_record_widens_what_it_may_be_used_for(configured: pg.Policy) -> None:
    class Contact(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("inquiry", prohibited=("marketing.promotion",))]
        consent: Annotated[frozenset[str], pg.Consent] = frozenset()

    consenting = Contact(email=CANARY, consent={"marketing"})
    other = Contact(email=CANARY)
    with pg.purpose("marketing.events"):
        assert consenting.email == CANARY
        assert {"email": CANARY, "consent": {"marketing"}} == consenting.model_dump()
        with pytest.raises(pg.PurposeViolation):
            _ = other.email
    with pg.purpose("marketing.promotion"), pytest.raises(pg.PurposeViolation) as caught:
        _ = consenting.email  # consent widens A, never P
    assert caught.value.reason == "prohibited"
    consenting.consent = frozenset()  # withdrawn: the seals follow
    with pg.purpose("marketing.events"), pytest.raises(pg.PurposeViolation):
        consenting.model_dump()


def test_consent_holds_purpose_ids_only(configured: pg.Policy) -> None:
    class Contact(pg.GuardedModel):
        consent: Annotated[frozenset[str], pg.Consent] = frozenset()

    with pytest.raises(ValidationError, match="not a purpose id"):
        Contact(consent={"Marketing!"})
    with pytest.raises(pg.ConfigurationError, match="cannot be guarded"):

        class Bad(pg.GuardedModel):
            consent: Annotated[frozenset[str], pg.Consent, pg.CollectedFor("inquiry")]


def test_consent_never_widens_a_strict_category(configured: pg.Policy) -> None:
    class Employee(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax.withholding", category="my_number")]
        consent: Annotated[frozenset[str], pg.Consent] = frozenset()

    employee = Employee(my_number=CANARY, consent={"marketing", "recruitment"})
    with pg.purpose("tax.withholding"):
        assert employee.my_number == CANARY
    for purpose in ("marketing", "recruitment", "tax"):
        with pg.purpose(purpose), pytest.raises(pg.PurposeViolation):
            _ = employee.my_number


def test_a_strict_category_is_a_closed_list_even_for_compatible_purposes(
    alj_policy: pg.Policy,
) -> None:
    purposes = {
        **alj_policy.model_dump()["purposes"],
        "audit": {"description": "audit", "compatible_with": ["tax"]},
    }
    pg.configure(policy=with_policy(alj_policy, purposes=purposes))

    class Plain(pg.GuardedModel):
        amount: Annotated[str, pg.CollectedFor("tax")]

    class Strict(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax", category="my_number")]

    with pg.purpose("audit"):
        assert Plain(amount=CANARY).amount == CANARY
        with pytest.raises(pg.PurposeViolation):
            _ = Strict(my_number=CANARY).my_number
    assert "audit" not in pg.purposes_of(Strict, "my_number")


def test_strict_category_tags_outside_the_list_and_unknown_categories_are_errors(
    configured: pg.Policy,
) -> None:
    with pytest.raises(pg.PolicyError, match="strict category"):

        class Outside(pg.GuardedModel):
            my_number: Annotated[str, pg.CollectedFor("marketing", category="my_number")]

    with pytest.raises(pg.PolicyError, match="not declare"):

        class Unknown(pg.GuardedModel):
            x: Annotated[str, pg.CollectedFor("tax", category="nope")]


def test_a_subject_id_is_hashed_in_events_never_shown(alj_policy: pg.Policy) -> None:
    pg.configure(policy=alj_policy, subject_key=b"secret-key")

    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(applicant_id="subject-42", email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        for attempt in (lambda: applicant.email, applicant.model_dump, lambda: dict(applicant)):
            with pytest.raises(pg.PurposeViolation):
                attempt()
    assert [subject_hash("subject-42")] * 3 == [e["subject"] for e in events]
    assert all("subject-42" not in repr(e) for e in events)
    with pytest.raises(pg.ConfigurationError, match="SubjectId"):

        class Two(pg.GuardedModel):
            a: Annotated[str, pg.SubjectId]
            b: Annotated[str, pg.SubjectId]


def test_a_registry_suspension_narrows_a_record_with_a_subject(alj_policy: pg.Policy) -> None:
    with pg.Registry(refresh_interval=None) as registry:
        _registry_case_suspension(alj_policy, registry)


def _registry_case_suspension(alj_policy: pg.Policy, registry: pg.Registry) -> None:
    pg.configure(policy=alj_policy, registry=registry)

    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]

    suspended = Applicant(applicant_id="s1", email=CANARY)
    other = Applicant(applicant_id="s2", email=CANARY)
    registry.suspend_use("s1", ["recruitment"])
    with pg.testing.capture_violations() as events, pg.purpose("recruitment.selection"):
        assert other.email == CANARY
        with pytest.raises(pg.PurposeViolation) as caught:
            _ = suspended.email
        with pytest.raises(pg.PurposeViolation):
            suspended.model_dump()
    assert caught.value.reason == "suspended"
    assert [(e["reason"], e["channel"]) for e in events] == [
        ("suspended", "attribute"),
        ("suspended", "dump"),
    ]
    with pg.purpose("inquiry"):
        assert suspended.email == CANARY
    registry.resume_use("s1")
    with pg.purpose("recruitment"):
        assert suspended.email == CANARY


def test_a_registry_consent_widens_but_not_a_strict_category(alj_policy: pg.Policy) -> None:
    with pg.Registry(refresh_interval=None) as registry:
        _registry_case_consent(alj_policy, registry)


def _registry_case_consent(alj_policy: pg.Policy, registry: pg.Registry) -> None:
    pg.configure(policy=alj_policy, registry=registry)

    class Employee(pg.GuardedModel):
        employee_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("inquiry")]
        my_number: Annotated[str, pg.CollectedFor("tax", category="my_number")]

    employee = Employee(employee_id="e1", email=CANARY, my_number=CANARY)
    registry.grant_consent("e1", purposes=["marketing"])
    with pg.purpose("marketing"):
        assert employee.email == CANARY
        with pytest.raises(pg.PurposeViolation):
            _ = employee.my_number


# --- the policy file tags fields by path -----------------------------------------------------------


def test_the_policy_file_tags_a_class_defined_after_it(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Vendor.phone"
    policy = with_policy(alj_policy, fields={path: {"collected_for": ["contract"]}})
    pg.configure(policy=policy)

    # a module-level path, as the policy file writes it
    Vendor = create_model(
        "Vendor", __base__=pg.GuardedModel, __module__=__name__, name=str, phone=(str, "000")
    )
    vendor = Vendor(name="v", phone=CANARY)
    assert isinstance(vars(vendor)["phone"], Sealed)
    with pg.purpose("contract.customer"):
        assert vendor.phone == CANARY
        assert vendor.model_dump() == {"name": "v", "phone": CANARY}
    with pg.purpose("marketing"):
        with pytest.raises(pg.PurposeViolation):
            _ = vendor.phone
        with pytest.raises(pg.PurposeViolation):
            vendor.model_dump_json()
        assert vendor.name == "v"


def test_policy_tags_merge_with_class_tags(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Merged.email"
    pg.configure(policy=alj_policy)
    Merged = create_model(
        "Merged",
        __base__=pg.GuardedModel,
        __module__=__name__,
        email=Annotated[str, pg.CollectedFor("recruitment", "inquiry")],
    )
    record = Merged(email=CANARY)
    with pg.purpose("inquiry"):
        assert record.email == CANARY
    # a value must comply with each tag: the policy's narrows the class's
    pg.configure(policy=with_policy(alj_policy, fields={path: {"collected_for": ["recruitment"]}}))
    with pg.purpose("inquiry"), pytest.raises(pg.PurposeViolation):
        _ = record.email
    with pg.purpose("recruitment"):
        assert record.email == CANARY


def test_a_policy_tagging_an_untagged_field_of_an_existing_class_is_refused(
    alj_policy: pg.Policy,
) -> None:
    pg.configure(policy=alj_policy)
    Early = create_model("Early", __base__=pg.GuardedModel, __module__=__name__, phone=str)
    policy = with_policy(
        alj_policy, fields={f"{__name__}.Early.phone": {"collected_for": ["contract"]}}
    )
    with pytest.raises(pg.PolicyError, match="defined before the policy"):
        pg.configure(policy=policy)
    assert alj_policy is pg.get_policy()
    assert Early(phone="1").phone == "1"


# --- dataclasses -----------------------------------------------------------------------------------


def test_guarded_dataclasses_plain_frozen_and_slotted(configured: pg.Policy) -> None:
    @pg.guarded
    @dataclass
    class Plain:
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    @pg.guarded
    @dataclass(frozen=True, slots=True)
    class Slotted:
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    for cls in (Plain, Slotted):
        record = cls("n", CANARY)
        assert CANARY not in repr(record)
        assert "email=<guarded>" in repr(record)
        with pg.purpose("recruitment"):
            assert record.email == CANARY
            assert dataclasses.asdict(record) == {"name": "n", "email": CANARY}
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as caught:
            dataclasses.asdict(record)
        assert caught.value.channel == "asdict"
        with pg.purpose("marketing"):
            replaced = dataclasses.replace(record, name="m")  # a copy, not a read
            clone = copy.deepcopy(record)
        for item in (replaced, clone, copy.copy(record)):
            with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
                _ = item.email
            with pg.purpose("recruitment"):
                assert item.email == CANARY
    plain = Plain("n", "a")
    plain.email = CANARY
    assert "email" not in vars(plain)  # a dataclass keeps its guarded values in its vault
    assert isinstance(vars(plain)[VAULT], Vault)


def test_guarded_needs_a_dataclass() -> None:
    with pytest.raises(pg.ConfigurationError, match="above @dataclass"):

        @pg.guarded
        class NotADataclass:
            email: Annotated[str, pg.CollectedFor("recruitment")]


def test_a_dataclass_with_consent_and_subject(alj_policy: pg.Policy) -> None:
    pg.configure(policy=alj_policy, subject_key=b"k")

    @pg.guarded(pickle="refuse")
    @dataclass
    class Contact:
        email: Annotated[str, pg.CollectedFor("inquiry")]
        contact_id: Annotated[str, pg.SubjectId] = "c9"
        consent: Annotated[tuple[str, ...], pg.Consent] = ()

    contact = Contact(CANARY, consent=("marketing",))
    with pg.purpose("marketing"):
        assert contact.email == CANARY
        assert vars(contact)[VAULT] == CANARY
    with (
        pg.testing.capture_violations() as events,
        pg.purpose("recruitment"),
        pytest.raises(pg.PurposeViolation),
    ):
        _ = vars(contact)[VAULT] == CANARY
    assert [subject_hash("c9")] == [e["subject"] for e in events]


# --- generator-scoped purposes ---------------------------------------------------------------------


def test_a_purpose_scoped_to_a_generator_covers_its_reads(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)

    def emails() -> Iterator[str]:
        with pg.purpose("recruitment"):
            yield applicant.email
            yield applicant.model_dump()["email"]

    assert list(emails()) == [CANARY, CANARY]


def test_events_name_the_line_that_used_the_data(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        with pytest.raises(pg.PurposeViolation):
            _ = applicant.email
        with pytest.raises(pg.PurposeViolation):
            applicant.model_dump()
    files, lines = zip(*(e["code"].rsplit(":", 1) for e in events), strict=True)
    assert (__file__, __file__) == files
    assert [linecache.getline(__file__, int(n)).strip() for n in lines] == [
        "_ = applicant.email",
        "applicant.model_dump()",
    ]


def test_a_slotted_dataclass_pickles_its_seals_not_its_values(configured: pg.Policy) -> None:
    @pg.guarded
    @dataclass(slots=True)
    class Slotted:
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment")]

    record = Slotted("n", CANARY)
    state = record.__getstate__()  # type: ignore[attr-defined]
    assert [state[0], repr(state[1])] == ["n", "<guarded>"]
    with pg.purpose("recruitment"), pytest.raises(pg.SealedPickleError):
        pickle.dumps(state)


def test_a_policy_field_entry_can_set_the_mode(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Rollout.email"
    pg.configure(
        policy=with_policy(
            alj_policy, fields={path: {"collected_for": ["recruitment"], "mode": "monitor"}}
        )
    )
    Rollout = create_model("Rollout", __base__=pg.GuardedModel, __module__=__name__, email=str)
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        assert Rollout(email=CANARY).email == CANARY
    assert [(e["mode"], e["enforced"]) for e in events] == [("monitor", False)]


def test_the_serialization_schema_is_the_fields_own(configured: pg.Policy) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Redacted(pg.GuardedModel):
        purposeguard_on_denied = "redact"
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class RedactedChild(Redacted):
        pass

    def email_schema(cls: type[BaseModel]) -> Any:
        return cls.model_json_schema(mode="serialization")["properties"]["email"]

    assert email_schema(Applicant) == {"title": "Email", "type": "string"}
    expected = {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Email"}
    assert expected == email_schema(Redacted)
    assert expected == email_schema(RedactedChild)
    assert Redacted.model_json_schema()["properties"]["email"] == {
        "title": "Email",
        "type": "string",
    }


def test_the_policy_puts_a_field_in_a_strict_category(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Payroll.my_number"
    entry = {"collected_for": ["tax.withholding"], "category": "my_number"}
    pg.configure(policy=with_policy(alj_policy, fields={path: entry}))
    Payroll = create_model(
        "Payroll",
        __base__=pg.GuardedModel,
        __module__=__name__,
        my_number=str,
        consent=(Annotated[frozenset[str], pg.Consent], frozenset()),
    )
    record = Payroll(my_number=CANARY, consent={"marketing"})
    with pg.purpose("tax.withholding"):
        assert record.my_number == CANARY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = record.my_number


def test_the_policy_tags_a_dataclass_defined_after_it(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Visitor.badge"
    pg.configure(policy=with_policy(alj_policy, fields={path: {"collected_for": ["security"]}}))

    @dataclass
    class Visitor:
        badge: str

    Visitor.__qualname__ = "Visitor"  # as if defined at module level, where the path points
    pg.guarded(Visitor)
    visitor = Visitor(CANARY)
    assert isinstance(vars(visitor)[VAULT], Vault)
    with pg.purpose("security"):
        assert visitor.badge == CANARY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = visitor.badge


def _serialize_as_any_dumps(record: Any) -> list[Callable[[], object]]:
    class Holder(BaseModel):
        item: Any

    adapter = TypeAdapter(type(record))
    return [
        lambda: record.model_dump(serialize_as_any=True),
        lambda: record.model_dump_json(serialize_as_any=True),
        lambda: adapter.dump_python(record, serialize_as_any=True),
        lambda: Holder(item=record).model_dump(serialize_as_any=True),
        lambda: Holder(item=record).model_dump_json(serialize_as_any=True),
    ]


def test_serialize_as_any_is_checked_like_any_dump(configured: pg.Policy) -> None:
    """``serialize_as_any=True`` makes pydantic serialize each value by its runtime type; a
    guarded field's serializer still runs (it is the field's, with the record): outside the
    purposes every form of the dump is refused and recorded, within them it holds the value."""

    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    applicant = Applicant(email=CANARY)
    for purpose in (None, "marketing"):
        for dump in _serialize_as_any_dumps(applicant):
            with contextlib.ExitStack() as stack, pg.testing.capture_violations() as events:
                if purpose is not None:
                    stack.enter_context(pg.purpose(purpose))
                with pytest.raises((pg.PurposeViolation, PydanticSerializationError)) as info:
                    dump()
            assert CANARY not in str(info.value)
            assert [e["channel"] for e in events] == ["dump"]
    with pg.purpose("recruitment"):
        out = applicant.model_dump(serialize_as_any=True)
        assert [(type(v), v) for v in out.values()] == [(str, CANARY)]
        for dump in _serialize_as_any_dumps(applicant):
            assert CANARY in str(dump())
