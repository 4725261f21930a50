"""Retention on guarded models and dataclasses: a use of a field past its retention period,
counted from the record's ``pg.CollectedAt`` time, is denied with reason ``expired`` on every
channel; and ``pg.check(field=...)`` agrees with a read about strict categories."""

from __future__ import annotations

import copy
import dataclasses
import gc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from tests.conftest import CANARY, with_policy

import purposeguard as pg
from purposeguard._time import parse_duration

T0 = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    """The clock retention is measured with, frozen at ``now``."""

    def __init__(self) -> None:
        self.now = T0


@pytest.fixture
def clock() -> Iterator[Clock]:
    frozen = Clock()
    with pg.testing.retention_clock(lambda: frozen.now):
        yield frozen


def expired(collected_at: datetime, period: timedelta, now: datetime) -> bool:
    """The retention rule, written out: data is past its period from ``collected_at + period``."""
    return now >= collected_at + period


def contact_policy(
    alj_policy: pg.Policy, retention: str | None = "1y", **changes: Any
) -> pg.Policy:
    """The reference policy with a category ``contact`` kept for ``retention``."""
    category = {"description": "contact details", "retention": retention}
    return with_policy(alj_policy, categories={"contact": category}, **changes)


def pydantic_inquiry() -> type[pg.GuardedModel]:
    class Inquiry(pg.GuardedModel):
        inquiry_id: str
        collected_at: Annotated[datetime | None, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]
        topic: Annotated[str, pg.CollectedFor("inquiry")]

    return Inquiry


def dataclass_inquiry() -> type[Any]:
    @pg.guarded
    @dataclass
    class Inquiry:
        inquiry_id: str
        collected_at: Annotated[datetime | None, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]
        topic: Annotated[str, pg.CollectedFor("inquiry")]

    return Inquiry


KINDS = [
    pytest.param(pydantic_inquiry, id="pydantic"),
    pytest.param(dataclass_inquiry, id="dataclass"),
]


def make(factory: Any, collected_at: datetime | None = T0) -> Any:
    cls = factory()
    return cls(inquiry_id="i-1", collected_at=collected_at, email=CANARY, topic="billing")


@pytest.fixture
def enforce(configured: pg.Policy, isolated: None, clock: Clock) -> Clock:
    return clock


# --- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", KINDS)
def test_a_read_within_the_retention_period_is_allowed(enforce: Clock, factory: Any) -> None:
    record = make(factory)
    enforce.now = T0 + 30 * DAY - timedelta(microseconds=1)
    with pg.testing.capture_violations() as events, pg.purpose("inquiry"):
        assert record.email == CANARY
    assert events == []


@pytest.mark.parametrize("factory", KINDS)
def test_a_read_after_the_retention_period_is_denied_as_expired(
    enforce: Clock, factory: Any
) -> None:
    record = make(factory)
    enforce.now = T0 + 30 * DAY  # the period is over at its last instant
    with pg.testing.capture_violations() as events, pg.purpose("inquiry"):
        with pytest.raises(pg.PurposeViolation) as info:
            _ = record.email
        assert record.topic == "billing"  # a field without a retention is not affected
    assert (info.value.reason, info.value.channel, info.value.purpose) == (
        "expired",
        "attribute",
        "inquiry",
    )
    assert CANARY not in str(info.value)
    assert [(e["reason"], e["channel"], e["enforced"]) for e in events] == [
        ("expired", "attribute", True)
    ]
    assert CANARY not in repr(events)


@pytest.mark.parametrize("factory", KINDS)
def test_monitor_mode_passes_an_expired_value_and_records_it(
    alj_policy: pg.Policy, isolated: None, clock: Clock, factory: Any
) -> None:
    pg.configure(policy=alj_policy, mode="monitor")
    record = make(factory)
    clock.now = T0 + 31 * DAY
    with pg.testing.capture_violations() as events, pg.purpose("inquiry"):
        assert record.email == CANARY
    assert [(e["reason"], e["mode"], e["enforced"]) for e in events] == [
        ("expired", "monitor", False)
    ]


@pytest.mark.parametrize("factory", KINDS)
def test_a_purpose_the_field_does_not_allow_is_still_not_allowed(
    enforce: Clock, factory: Any
) -> None:
    record = make(factory)
    enforce.now = T0 + 365 * DAY
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as info:
        _ = record.email
    assert info.value.reason == "not_allowed"


@pytest.mark.parametrize("factory", KINDS)
def test_every_channel_of_an_expired_record_is_denied(enforce: Clock, factory: Any) -> None:
    record = make(factory)
    other = type(record)(inquiry_id="i-1", collected_at=T0, email=CANARY, topic="billing")
    enforce.now = T0 + 60 * DAY
    stored = vars(record)["email" if isinstance(record, BaseModel) else "__purposeguard__"]
    with pg.purpose("inquiry"):
        if isinstance(record, BaseModel):
            channels: dict[str, Any] = {
                "dump": record.model_dump,
                "dump_json": record.model_dump_json,
                "iter": lambda: dict(record),
            }
        else:
            channels = {
                "asdict": lambda: dataclasses.asdict(record),
                "astuple": lambda: dataclasses.astuple(record),
                "dump": lambda: (
                    __import__("pydantic").TypeAdapter(type(record)).dump_python(record)
                ),
            }
        channels["eq"] = lambda: record == other
        channels["sealed eq"] = lambda: stored == CANARY
        channels["hash"] = lambda: hash(stored)
        for name, use in channels.items():
            with pytest.raises((pg.PurposeViolation, ValueError)) as info:
                use()
            assert "expired" in str(info.value), name
            assert CANARY not in str(info.value), name
        copied = copy.deepcopy(record)  # a copy is not a read, and keeps the seal and the time
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = copied.email


def test_a_dump_redacts_or_omits_an_expired_field_as_the_model_chooses(enforce: Clock) -> None:
    class Redacting(pg.GuardedModel):
        purposeguard_on_denied = "redact"
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    class Omitting(pg.GuardedModel):
        purposeguard_on_denied = "omit"
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    class Parent(pg.GuardedModel):
        child: Redacting

    redacting = Redacting(collected_at=T0, email=CANARY)
    omitting = Omitting(collected_at=T0, email=CANARY)
    with pg.purpose("inquiry"):
        assert redacting.model_dump()["email"] == CANARY
        enforce.now = T0 + 30 * DAY
        with pg.testing.capture_violations() as events:
            assert redacting.model_dump() == {"collected_at": T0, "email": None}
            assert omitting.model_dump() == {"collected_at": T0}
            assert None is Parent(child=redacting).model_dump()["child"]["email"]
    assert [e["reason"] for e in events] == ["expired"] * 3
    assert {"dump"} == {e["channel"] for e in events}


def test_a_nested_parents_dump_raises_for_an_expired_child(enforce: Clock) -> None:
    Inquiry = pydantic_inquiry()

    class Thread(pg.GuardedModel):
        inquiries: list[Inquiry]  # type: ignore[valid-type]

    thread = Thread(inquiries=[make(lambda: Inquiry)])
    enforce.now = T0 + 30 * DAY
    with pg.purpose("inquiry"), pytest.raises(pg.PurposeViolation) as info:
        thread.model_dump()
    assert (info.value.reason, info.value.channel) == ("expired", "dump")


# --- where the period comes from -----------------------------------------------------------------


def test_the_shortest_of_field_category_and_policy_entry_applies(
    alj_policy: pg.Policy, isolated: None, clock: Clock
) -> None:
    pg.configure(policy=contact_policy(alj_policy, "1y"))

    class Contact(pg.GuardedModel):
        __qualname__ = "Contact"  # as if defined at module level, where a policy path can point
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", category="contact", retention="30d")]
        phone: Annotated[str, pg.CollectedFor("inquiry", category="contact", retention="2y")]
        fax: Annotated[str, pg.CollectedFor("inquiry", category="contact")]
        note: Annotated[str, pg.CollectedFor("inquiry")]

    assert [pg.retention_for(Contact, n) for n in ("email", "phone", "fax", "note")] == [
        30 * DAY,
        365 * DAY,
        365 * DAY,
        None,
    ]
    notice = pg.purpose_notice(Contact).to_json()
    assert {f["field"]: f["retention_days"] for f in notice["fields"]} == {
        "email": 30,
        "fax": 365,
        "note": None,
        "phone": 365,
    }
    record = Contact(collected_at=T0, email=CANARY, phone=CANARY, fax=CANARY, note=CANARY)
    clock.now = T0 + 100 * DAY
    with pg.purpose("inquiry"):
        assert (record.phone, record.fax, record.note) == (CANARY, CANARY, CANARY)
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = record.email
        clock.now = T0 + 365 * DAY
        for name in ("phone", "fax"):
            with pytest.raises(pg.PurposeViolation, match="expired"):
                getattr(record, name)
        assert record.note == CANARY

    path = f"{Contact.__module__}.{Contact.__qualname__}.note"
    entry = pg.FieldTag(collected_for=("inquiry",), retention=7 * DAY)
    pg.configure(policy=contact_policy(alj_policy, "1y", fields={path: entry}))
    assert pg.retention_for(Contact, "note") == 7 * DAY
    clock.now = T0 + 7 * DAY
    with pg.purpose("inquiry"), pytest.raises(pg.PurposeViolation, match="expired"):
        _ = record.note


def test_a_policy_reload_that_adds_a_retention_applies_at_the_next_read(
    alj_policy: pg.Policy, isolated: None, clock: Clock
) -> None:
    pg.configure(policy=contact_policy(alj_policy, "10y"))

    @pg.guarded
    @dataclass(frozen=True, slots=True)
    class Contact:
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", category="contact")]

    record = Contact(collected_at=T0, email=CANARY)
    clock.now = T0 + 40 * DAY
    with pg.purpose("inquiry"):
        assert record.email == CANARY
        pg.configure(policy=contact_policy(alj_policy, "30d"))
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = record.email
        pg.configure(policy=contact_policy(alj_policy, "10y"))
        assert record.email == CANARY


def test_a_field_without_retention_keeps_the_fast_path(enforce: Clock) -> None:
    Inquiry = pydantic_inquiry()
    layout = Inquiry.__purposeguard_layout__
    topic, email = layout.guards["topic"], layout.guards["email"]
    assert (topic.allowed, topic.retention) == (topic.usable, None)
    assert (email.allowed, email.retention) == (frozenset(), 30 * DAY)  # slow path: reads clock
    assert "inquiry" in pg.purposes_of(Inquiry, "email")


# --- missing or malformed collection times -------------------------------------------------------


@pytest.mark.parametrize("factory", KINDS)
def test_a_record_without_a_collection_time_is_expired_for_retained_fields(
    enforce: Clock, factory: Any
) -> None:
    record = make(factory, collected_at=None)
    with pg.purpose("inquiry"):
        assert record.topic == "billing"
        with pytest.raises(pg.PurposeViolation) as info:
            _ = record.email
    assert info.value.reason == "expired"


def test_a_naive_collection_time_is_a_validation_error(enforce: Clock) -> None:
    naive = datetime(2024, 4, 1, 9, 0)
    with pytest.raises(ValidationError, match="timezone-aware") as info:
        make(pydantic_inquiry, collected_at=naive)
    assert CANARY not in str(info.value)
    with pytest.raises(ValueError, match=r"CollectedAt\) must be a timezone-aware datetime"):
        make(dataclass_inquiry, collected_at=naive)
    tokyo = timezone(timedelta(hours=9))
    record = make(pydantic_inquiry, collected_at=T0.astimezone(tokyo))  # any aware zone
    enforce.now = T0 + 30 * DAY
    with pg.purpose("inquiry"), pytest.raises(pg.PurposeViolation, match="expired"):
        _ = record.email


def test_assigning_a_naive_time_without_validation_fails_closed(enforce: Clock) -> None:
    record = make(pydantic_inquiry)
    with pg.purpose("inquiry"):
        assert record.email == CANARY
        record.collected_at = datetime(2024, 4, 1)  # no validate_assignment: not validated
        with pytest.raises(pg.PurposeViolation, match="expired"):
            record.model_dump()
        record.collected_at = T0  # re-sealed with the new time
        assert record.model_dump()["email"] == CANARY


def test_a_retention_without_a_collection_time_field_is_an_error_at_definition(
    alj_policy: pg.Policy, isolated: None
) -> None:
    pg.configure(policy=alj_policy)
    with pytest.raises(pg.ConfigurationError, match=r"pg\.CollectedAt"):

        class Untimed(pg.GuardedModel):
            email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    with pytest.raises(pg.ConfigurationError, match="retention '3 years'"):
        pg.CollectedFor("inquiry", retention="3 years")

    pg.configure(policy=contact_policy(alj_policy, None))

    class Legacy(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("inquiry", category="contact")]

    before = pg.get_policy()
    with pytest.raises(pg.PolicyError, match="no collection time"):
        pg.configure(policy=contact_policy(alj_policy, "1y"))
    assert before is pg.get_policy()  # the last good policy stays
    del Legacy  # gone: the policy now applies to no class without a collection time
    gc.collect()
    pg.configure(policy=contact_policy(alj_policy, "1y"))
    with pytest.raises(pg.PolicyError, match="no collection time"):

        @pg.guarded
        @dataclass
        class LegacyToo:
            email: Annotated[str, pg.CollectedFor("inquiry", category="contact")]


# --- with the subject registry -------------------------------------------------------------------


def test_a_restricted_subjects_record_is_also_held_to_its_retention(enforce: Clock) -> None:
    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("recruitment", retention="30d")]

    registry = pg.Registry(refresh_interval=None)
    pg.configure(registry=registry)
    registry.suspend_use("a-1", ["marketing"])  # restricted, but not for recruitment
    record = Applicant(applicant_id="a-1", collected_at=T0, email=CANARY)
    with pg.purpose("recruitment"):
        assert record.email == CANARY
        enforce.now = T0 + 30 * DAY
        with pytest.raises(pg.PurposeViolation) as info:
            _ = record.email
    assert info.value.reason == "expired"


# --- property ------------------------------------------------------------------------------------

PERIODS = ("12h", "1d", "30d", "3y")


@pytest.fixture
def retained(enforce: Clock) -> dict[tuple[str, str], Any]:
    """A pydantic model and a dataclass per retention period."""
    classes: dict[tuple[str, str], Any] = {}
    for period in PERIODS:

        class PInquiry(pg.GuardedModel):
            collected_at: Annotated[datetime, pg.CollectedAt]
            email: Annotated[str, pg.CollectedFor("inquiry", retention=period)]

        @pg.guarded
        @dataclass
        class DInquiry:
            collected_at: Annotated[datetime, pg.CollectedAt]
            email: Annotated[str, pg.CollectedFor("inquiry", retention=period)]

        classes["pydantic", period] = PInquiry
        classes["dataclass", period] = DInquiry
    return classes


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    collected=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    elapsed=st.one_of(
        st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=4000)),
        st.sampled_from([timedelta(hours=12), DAY, 30 * DAY, 3 * 365 * DAY]).flatmap(
            lambda p: st.sampled_from([p - timedelta(microseconds=1), p])
        ),
    ),
    kind=st.sampled_from(["pydantic", "dataclass"]),
    period=st.sampled_from(PERIODS),
    channel=st.sampled_from(["attribute", "eq"]),
)
def test_a_use_is_allowed_exactly_while_the_reference_says_it_has_not_expired(
    retained: dict[tuple[str, str], Any],
    enforce: Clock,
    collected: datetime,
    elapsed: timedelta,
    kind: str,
    period: str,
    channel: str,
) -> None:
    cls = retained[kind, period]
    record = cls(collected_at=collected, email=CANARY)
    enforce.now = collected + elapsed
    with pg.purpose("inquiry"), pg.testing.capture_violations() as events:
        try:
            twin = cls(collected_at=collected, email=CANARY)
            used: Any = record.email if channel == "attribute" else (record == twin)
        except pg.PurposeViolation as exc:
            used = exc.reason
    is_expired = expired(collected, parse_duration(period), enforce.now)
    assert ("expired" if is_expired else (CANARY if channel == "attribute" else True)) == used
    assert [("expired", channel)] * is_expired == [(e["reason"], e["channel"]) for e in events]


# --- pg.check and strict categories --------------------------------------------------------------


def test_check_of_a_field_in_a_strict_category_agrees_with_a_read(
    alj_policy: pg.Policy, isolated: None
) -> None:
    purposes = {
        **alj_policy.model_dump()["purposes"],
        "audit": {"description": "internal audit", "compatible_with": ["tax"]},
    }
    pg.configure(policy=with_policy(alj_policy, purposes=purposes))

    class Employee(pg.GuardedModel):
        amount: Annotated[str, pg.CollectedFor("tax")]
        my_number: Annotated[str, pg.CollectedFor("tax", category="my_number")]
        slip_number: Annotated[str, pg.CollectedFor("tax.withholding", category="my_number")]

    @dataclass
    class Legacy:
        my_number: Annotated[str, pg.CollectedFor("tax")]

    Legacy.__qualname__ = "Legacy"  # as if defined at module level, where the path points
    pg.guarded(Legacy)
    path = f"{Legacy.__module__}.{Legacy.__qualname__}.my_number"
    entry = pg.FieldTag(collected_for=("tax",), category="my_number")
    pg.configure(policy=with_policy(alj_policy, purposes=purposes, fields={path: entry}))

    employee = Employee(amount=CANARY, my_number=CANARY, slip_number=CANARY)
    legacy = Legacy(my_number=CANARY)
    with pg.purpose("audit"):
        assert employee.amount == CANARY
        with pytest.raises(pg.PurposeViolation) as read:
            _ = employee.my_number
        with pytest.raises(pg.PurposeViolation) as legacy_read:
            _ = legacy.my_number
        with pytest.raises(pg.PurposeViolation) as slip_read:
            _ = employee.slip_number
    slip = pg.check("audit", field=(Employee, "slip_number"))
    assert (False, slip_read.value.reason) == (slip.allowed, slip.reason)
    assert pg.check("audit", field=(Employee, "amount")).allowed
    for owner in (Employee, Legacy):
        decision = pg.check("audit", field=(owner, "my_number"))
        assert (False, read.value.reason) == (decision.allowed, decision.reason)
        assert legacy_read.value.reason == decision.reason
        assert pg.check("tax.withholding", field=(owner, "my_number")).allowed
        assert not pg.explain("audit", field=(owner, "my_number")).startswith("ALLOW")


@pytest.mark.parametrize(
    "make_dataclass",
    [pytest.param(dataclass, id="dict"), pytest.param(dataclass(slots=True), id="slots")],
)
def test_assigning_a_dataclasss_collection_time_reseals_its_values(
    enforce: Clock, make_dataclass: Any
) -> None:
    @pg.guarded
    @make_dataclass
    class Inquiry:
        collected_at: Annotated[datetime, pg.CollectedAt]
        email: Annotated[str, pg.CollectedFor("inquiry", retention="30d")]

    new: Any = Inquiry  # a dataclass made by a parametrized decorator, which mypy cannot see
    record = new(collected_at=T0, email=CANARY)
    enforce.now = T0 + 10 * DAY
    with pg.purpose("inquiry"):
        assert record.email == CANARY
        record.collected_at = T0 - 25 * DAY  # collected earlier than recorded: now expired
        assert record.collected_at == T0 - 25 * DAY
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = record.email
        with pytest.raises(pg.PurposeViolation, match="expired"):
            _ = record == new(collected_at=T0, email=CANARY)
