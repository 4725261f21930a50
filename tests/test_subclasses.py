"""A subclass keeps its bases' guarded fields guarded: re-declaring a field (to add a constraint,
a default) inherits its tags, its own CollectedFor may only narrow them (``widen=True`` replaces
them on purpose), and a dataclass subclass is guarded whether it is decorated or not. Each case
puts a canary in and scans what ordinary code gets out: dumps, ``vars()``, ``repr``, pickle, a
FastAPI response; in enforce and monitor mode."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pickle
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import orjson
import pydantic
import pytest
from fastapi import FastAPI
from pydantic import Field, ValidationError, create_model
from tests.conftest import CANARY, with_policy

import purposeguard as pg

SELECTION = "recruitment.selection"


@pytest.fixture(params=["enforce", "monitor"])
def mode(request: pytest.FixtureRequest, configured: pg.Policy, isolated: None) -> str:
    pg.configure(mode=request.param)
    return str(request.param)


@pytest.fixture
def Applicant(configured: pg.Policy, isolated: None) -> type[pg.GuardedModel]:
    """The base model (defined in the test: other tests configure other policies)."""

    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    return Applicant


def outputs(record: Any) -> Iterator[str]:
    """What ordinary code writes of ``record`` without a purpose check in the way."""
    yield repr(record)
    yield str(getattr(record, "__dict__", ""))  # (a slotted record has none)
    yield f"{record}"
    try:  # (the classes are local: what pickle would write of the record is its storage)
        yield repr(pickle.dumps(getattr(record, "__dict__", None)))
    except pg.PurposeGuardError:  # refused (and outside its purposes, a violation)
        pass


def dumps_under(purpose: str | None, record: Any) -> list[str]:
    """Every dump of ``record`` under ``purpose`` that got through (monitor mode), with the
    violations they recorded."""
    out = []
    if isinstance(record, pg.GuardedModel):
        calls = [record.model_dump, record.model_dump_json]
    else:
        calls = [lambda: dataclasses.asdict(record)]
    with pg.purpose(purpose) if purpose else contextlib.nullcontext():
        for call in calls:
            try:
                out.append(str(call()))
            except pg.PurposeViolation:
                out.append("<refused>")
    return out


# --- models ----------------------------------------------------------------------------------


def test_a_re_annotated_field_keeps_its_tags_and_gains_the_constraint(
    Applicant: Any, mode: str
) -> None:
    class Constrained(Applicant):
        email: Annotated[str, Field(max_length=254)]

    record = Constrained(applicant_id="a1", email=CANARY)
    assert Constrained.__purposeguard_fields__ == Applicant.__purposeguard_fields__
    for text in outputs(record):
        assert CANARY not in text
    with pg.testing.capture_violations() as events:
        dumped = dumps_under("marketing", record)
    if mode == "enforce":
        assert dumped == ["<refused>", "<refused>"]
    else:
        assert all(CANARY in d for d in dumped)
    assert [(e["field"], e["channel"]) for e in events] == [
        (f"{__name__}.{Constrained.__qualname__}.email", "dump")
    ] * 2
    with pg.purpose(SELECTION):
        assert record.email == CANARY
    with pytest.raises(ValidationError):
        Constrained(applicant_id="a2", email="x" * 255)


def test_a_re_declared_field_with_a_default_keeps_its_tags(Applicant: Any, mode: str) -> None:
    class WithDefault(Applicant):
        email: str = "nobody@example.com"

    record = WithDefault(applicant_id="a1", email=CANARY)
    for text in outputs(record):
        assert CANARY not in text
    with pg.testing.capture_violations() as events:
        dumps_under(None, record)
    assert {e["reason"] for e in events} == {"no_purpose"}


def test_a_response_model_subclass_on_a_route_for_another_purpose(
    Applicant: Any, mode: str
) -> None:
    class Public(Applicant):
        email: Annotated[str, Field(max_length=254)]

    app = FastAPI()

    @app.get("/campaign", response_model=Public)
    async def campaign() -> Any:
        return Public(applicant_id="a1", email=CANARY)

    async def marketing(scope: Any, receive: Any, send: Any) -> None:
        async with pg.purpose("marketing"):
            await app(scope, receive, send)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=marketing, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/campaign")

    with pg.testing.capture_violations() as events:
        response = asyncio.run(call())
    if mode == "enforce":
        assert (response.status_code, CANARY in response.text) == (500, False)
    else:
        assert (response.status_code, response.json()["email"]) == (200, CANARY)
    assert {(e["channel"], e["purpose"]) for e in events} == {("dump", "marketing")}


def test_a_subclass_narrows_with_its_own_collected_for(Applicant: Any, mode: str) -> None:
    class Narrow(Applicant):
        email: Annotated[str, pg.CollectedFor(SELECTION)]

    record = Narrow(applicant_id="a1", email=CANARY)
    with pg.purpose(SELECTION):
        assert record.email == CANARY
    with pg.testing.capture_violations() as events, pg.purpose("recruitment"):
        try:
            record.email  # noqa: B018
        except pg.PurposeViolation:
            pass
    assert [e["reason"] for e in events] == ["not_allowed"]


@pytest.mark.parametrize(
    ("marker", "problem"),
    [
        (pg.CollectedFor("recruitment", "marketing"), "names marketing"),
        (pg.CollectedFor("recruitment", mode="monitor"), "lowers"),
    ],
)
def test_a_subclass_that_widens_is_refused_when_defined(
    Applicant: Any, configured: pg.Policy, isolated: None, marker: pg.CollectedFor, problem: str
) -> None:
    with pytest.raises(pg.ConfigurationError, match=problem) as info:

        class Wider(Applicant):
            email: Annotated[str, marker]

    assert "widen=True" in str(info.value)


def test_widen_replaces_the_inherited_tags(Applicant: Any, mode: str) -> None:
    class Widened(Applicant):
        email: Annotated[str, pg.CollectedFor("marketing", widen=True)]

    record = Widened(applicant_id="a1", email=CANARY)
    with pg.purpose("marketing"):
        assert record.email == CANARY
    with pg.testing.capture_violations() as events, pg.purpose(SELECTION):
        try:
            record.email  # noqa: B018
        except pg.PurposeViolation:
            pass
    assert [e["reason"] for e in events] == ["not_allowed"]


def test_roles_are_inherited_by_a_re_declaration(configured: pg.Policy, isolated: None) -> None:
    class Base(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        consent: Annotated[frozenset[str], pg.Consent] = frozenset()
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Sub(Base):
        applicant_id: Annotated[str, Field(min_length=2)]
        consent: frozenset[str] = frozenset()

    layout = Sub.__purposeguard_layout__
    assert (layout.subject, layout.consent) == ("applicant_id", "consent")
    record = Sub(applicant_id="a1", consent=frozenset({"marketing"}), email=CANARY)
    with pg.purpose("marketing"):  # the record's consent widens it, as in the base
        assert record.email == CANARY
    with pytest.raises(ValidationError):  # the Consent marker's validation is inherited too
        Sub(applicant_id="a1", consent=frozenset({"Not A Purpose"}), email=CANARY)


def test_the_policy_files_entry_for_a_base_tags_its_subclasses(alj_policy: pg.Policy) -> None:
    path = f"{__name__}.Vendor.phone"
    pg.configure(policy=with_policy(alj_policy, fields={path: {"collected_for": ["contract"]}}))
    with pg.testing.isolated_guards():
        Vendor = create_model("Vendor", __base__=pg.GuardedModel, __module__=__name__, phone=str)
        Local = create_model("Local", __base__=Vendor, __module__=__name__, phone=(str, ...))
        record = Local(phone=CANARY)
        assert CANARY not in repr(vars(record))
        with pg.purpose("contract"):
            assert record.phone == CANARY
        with pytest.raises(pg.PurposeViolation), pg.purpose("marketing"):
            record.model_dump()


# --- dataclasses -----------------------------------------------------------------------------


@pytest.fixture(params=[{}, {"slots": True}, {"frozen": True}], ids=["dict", "slots", "frozen"])
def options(request: pytest.FixtureRequest, mode: str) -> dict[str, bool]:
    return dict(request.param)


def base_dataclass(options: dict[str, bool]) -> type:
    @pg.guarded
    @dataclasses.dataclass(**options)
    class Employee:
        employee_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    return Employee


def test_a_plain_dataclass_subclass_is_guarded(options: dict[str, bool], mode: str) -> None:
    Employee = base_dataclass(options)

    @dataclasses.dataclass(**options)
    class Contractor(Employee):  # type: ignore[misc, valid-type]
        email: str = "nobody@example.com"
        phone: Annotated[str, pg.CollectedFor("inquiry")] = "none"

    record = Contractor(employee_id="e1", email=CANARY, phone=CANARY + "-phone")
    assert Contractor.__purposeguard_fields__.keys() == {"email", "phone"}
    for text in outputs(record):
        assert CANARY not in text
    with pg.testing.capture_violations() as events:
        dumped = dumps_under("marketing", record)
    if mode == "enforce":
        assert dumped == ["<refused>"]
    else:
        assert CANARY in dumped[0]
    assert {e["field"].rpartition(".")[2] for e in events} >= {"email"}
    with pg.purpose(SELECTION):
        assert record.email == CANARY
        assert CANARY not in repr(record)
    with pytest.raises(TypeError, match="not JSON serializable"):
        orjson.dumps(record)


def test_a_decorated_dataclass_subclass_inherits(options: dict[str, bool], mode: str) -> None:
    Employee = base_dataclass(options)

    @pg.guarded
    @dataclasses.dataclass(**options)
    class Manager(Employee):  # type: ignore[misc, valid-type]
        email: Annotated[str, pg.CollectedFor(SELECTION)] = "x"

    record = Manager(employee_id="e1", email=CANARY)
    for text in outputs(record):
        assert CANARY not in text
    with pg.purpose(SELECTION):
        assert record.email == CANARY
    with pg.testing.capture_violations() as events, pg.purpose("recruitment"):
        try:
            record.email  # noqa: B018
        except pg.PurposeViolation:
            pass
    assert [e["reason"] for e in events] == ["not_allowed"]


def test_a_subclass_of_a_subclass(configured: pg.Policy, isolated: None) -> None:
    Employee = base_dataclass({})

    @dataclasses.dataclass
    class Middle(Employee):  # type: ignore[misc, valid-type]
        grade: int = 1

    @dataclasses.dataclass
    class Leaf(Middle):
        email: str = "leaf@example.com"

    record = Leaf(employee_id="e1", email=CANARY)
    assert CANARY not in repr(vars(record)) + repr(record)
    with pytest.raises(pg.PurposeViolation), pg.purpose("marketing"):
        dataclasses.asdict(record)


def test_a_subclass_that_widens_a_dataclass_field_is_refused(
    configured: pg.Policy, isolated: None
) -> None:
    Employee = base_dataclass({})
    with pytest.raises(pg.ConfigurationError, match="widen=True"):

        @dataclasses.dataclass
        class Wider(Employee):  # type: ignore[misc, valid-type]
            email: Annotated[str, pg.CollectedFor("marketing")] = "x"


def test_a_subclass_inherits_the_pickle_mode(configured: pg.Policy, isolated: None) -> None:
    @pg.guarded(pickle="purpose")
    @dataclasses.dataclass
    class Base:
        email: Annotated[str, pg.CollectedFor("recruitment")]

    @dataclasses.dataclass
    class Sub(Base):
        note: str = ""

    assert Sub.__purposeguard_layout__.pickle == "purpose"
    with pytest.raises(pg.ConfigurationError, match="inherits pickle='purpose'"):

        @pg.guarded(pickle="refuse")
        @dataclasses.dataclass
        class Refusing(Base):
            note: str = ""


def test_a_pydantic_dataclass_is_refused_with_what_to_use(
    configured: pg.Policy, isolated: None
) -> None:
    with pytest.raises(pg.ConfigurationError, match=r"pg\.GuardedModel") as info:

        @pg.guarded
        @pydantic.dataclasses.dataclass
        class Vendor:
            email: Annotated[str, pg.CollectedFor("contract")]

    assert "@dataclasses.dataclass" in str(info.value)


def test_the_class_guarded_returns_is_the_class_code_uses(
    configured: pg.Policy, isolated: None
) -> None:
    Employee = base_dataclass({"slots": True})
    record = Employee("e1", CANARY)
    assert type(record) is Employee
    assert dataclasses.is_dataclass(Employee)
    assert [f.name for f in dataclasses.fields(Employee)] == ["employee_id", "email"]
    assert "__dataclass_fields__" not in vars(Employee)  # what orjson looks for
    copied = dataclasses.replace(record, employee_id="e2")
    assert type(copied) is Employee
