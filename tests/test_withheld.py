"""A guarded model's validation errors withhold guarded input, in every form and under every
purpose: ``str()``, ``repr()``, ``json()``, ``errors()``, a rendered traceback, the exception
chain. What is not guarded stays as pydantic reports it, so an error is still useful."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from tests.conftest import CANARY

import purposeguard as pg
from purposeguard._withheld import WITHHELD

MY_NUMBER = "MN-" + CANARY
NAME = "Kanari Himitsu-Secret"  # a name that passes the model's own validator


def build() -> SimpleNamespace:
    """The models, defined in the test (module-level classes would meet every other test's
    policy)."""

    class Employee(pg.GuardedModel):
        model_config = ConfigDict(validate_assignment=True)

        employee_id: Annotated[str, pg.SubjectId]
        my_number: Annotated[str, pg.CollectedFor("tax.withholding"), Field(pattern=r"^\d{12}$")]
        name: Annotated[str, pg.CollectedFor("tax"), Field(alias="fullName")]
        grade: int

        @field_validator("name")
        @classmethod
        def _no_digits(cls, value: str) -> str:
            if any(c.isdigit() for c in value):
                raise ValueError(f"a name has no digits: {value}")  # quotes the input, as apps do
            return value

    class Team(BaseModel):  # a plain parent
        lead: Employee
        size: int

    class GuardedTeam(pg.GuardedModel):  # a guarded parent with no guarded field of its own
        lead: Employee
        size: int

    return SimpleNamespace(Employee=Employee, Team=Team, GuardedTeam=GuardedTeam)


def every_output(exc: BaseException) -> Iterator[str]:
    """Every form a validation error takes in a log, a report or a response."""
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        if isinstance(seen, ValidationError):
            yield seen.json()
            yield repr(seen.errors())
            yield json.dumps(seen.errors(include_url=False), default=str)
        seen = seen.__cause__ or seen.__context__
    # (a traceback rendered with its frames' locals also shows the input in the frames that hold
    # it: the application's own, pydantic's __init__. That input is the application's, not yet
    # a guarded record: docs/security.md)
    yield "".join(traceback.format_exception(exc))


def raised(call: Callable[[], object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call()
    for text in every_output(info.value):
        assert CANARY not in text
        assert NAME not in text
    return info.value


def good(**changes: Any) -> dict[str, Any]:
    return {
        "employee_id": "e1",
        "my_number": "123456789012",
        "fullName": "Aiko",
        "grade": 3,
    } | changes


@pytest.fixture
def m(configured: pg.Policy, isolated: None) -> SimpleNamespace:
    return build()


@pytest.fixture(params=["enforce", "monitor"])
def mode(request: pytest.FixtureRequest, m: SimpleNamespace) -> str:
    pg.configure(mode=request.param)
    return str(request.param)


@pytest.fixture(params=[None, "tax.withholding"])
def under(request: pytest.FixtureRequest, mode: str) -> Iterator[None]:
    """Under no purpose, and under one that allows the fields: withheld either way."""
    if request.param is None:
        yield
    else:
        with pg.purpose(request.param):
            yield


def test_a_rejected_guarded_value_is_withheld(m: SimpleNamespace, under: None) -> None:
    exc = raised(lambda: m.Employee(**good(my_number=MY_NUMBER)))
    (error,) = exc.errors()
    assert (error["type"], error["loc"], error["input"]) == (
        "string_pattern_mismatch",
        ("my_number",),
        WITHHELD,
    )
    assert "should match pattern" in error["msg"]  # pydantic's own message stays


def test_a_missing_sibling_withholds_the_guarded_keys_of_the_whole_input(
    m: SimpleNamespace, under: None
) -> None:
    data = good(my_number="123456789012", fullName=NAME)
    del data["grade"]
    exc = raised(lambda: m.Employee.model_validate(data))
    (error,) = exc.errors()
    assert error["type"] == "missing"
    assert error["input"] == {"employee_id": "e1", "my_number": WITHHELD, "fullName": WITHHELD}


def test_the_applications_own_message_for_a_guarded_field_is_withheld(
    m: SimpleNamespace, under: None
) -> None:
    exc = raised(lambda: m.Employee(**good(fullName=CANARY + "7")))
    (error,) = exc.errors()
    assert (error["type"], error["loc"], error["input"]) == ("value_error", ("fullName",), WITHHELD)
    assert "withheld" in error["msg"]


def test_a_field_not_guarded_keeps_its_input(m: SimpleNamespace, under: None) -> None:
    exc = raised(lambda: m.Employee(**good(grade="three", my_number=MY_NUMBER)))
    inputs = {e["loc"]: e["input"] for e in exc.errors()}
    assert inputs == {("my_number",): WITHHELD, ("grade",): "three"}


def test_json_input_that_does_not_parse_is_withheld(m: SimpleNamespace, under: None) -> None:
    exc = raised(lambda: m.Employee.model_validate_json('{"my_number": "' + MY_NUMBER + '"'))
    (error,) = exc.errors()
    assert (error["type"], error["input"]) == ("json_invalid", WITHHELD)


def test_json_input_with_a_rejected_value_is_withheld(m: SimpleNamespace, under: None) -> None:
    exc = raised(lambda: m.Employee.model_validate_json(json.dumps(good(my_number=MY_NUMBER))))
    assert [e["input"] for e in exc.errors()] == [WITHHELD]


def test_an_assignment_that_fails_validation_is_withheld(m: SimpleNamespace, under: None) -> None:
    employee = m.Employee(**good())
    exc = raised(lambda: setattr(employee, "my_number", MY_NUMBER))
    assert [(e["loc"], e["input"]) for e in exc.errors()] == [(("my_number",), WITHHELD)]


def test_a_guarded_record_inside_a_plain_parent(m: SimpleNamespace, under: None) -> None:
    exc = raised(lambda: m.Team(lead=good(my_number=MY_NUMBER), size=2))
    assert [(e["loc"], e["input"]) for e in exc.errors()] == [(("lead", "my_number"), WITHHELD)]


def test_a_guarded_parent_withholds_the_input_of_a_field_holding_a_guarded_record(
    m: SimpleNamespace, under: None
) -> None:
    exc = raised(lambda: m.GuardedTeam(lead=good(fullName=NAME)))
    assert [(e["loc"], e["input"]) for e in exc.errors()] == [(("size",), {"lead": WITHHELD})]


def test_a_type_adapter_of_guarded_records(m: SimpleNamespace, under: None) -> None:
    adapter = TypeAdapter(list[m.Employee])
    exc = raised(lambda: adapter.validate_python([good(), good(my_number=MY_NUMBER)]))
    assert [(e["loc"], e["input"]) for e in exc.errors()] == [((1, "my_number"), WITHHELD)]


def test_gap_a_plain_parent_quotes_its_own_raw_input(m: SimpleNamespace) -> None:
    """Documented in docs/security.md: a plain parent's own error (here, its missing ``size``)
    quotes the parent's whole input, a raw dict that is not yet a guarded record. Make the
    parent a GuardedModel (as ``GuardedTeam``) and it withholds the key."""
    with pytest.raises(ValidationError) as info:
        m.Team.model_validate({"lead": good(fullName=NAME)})
    assert NAME in info.value.json()


def test_the_error_still_counts_and_names_every_failure(m: SimpleNamespace) -> None:
    data = good(my_number=MY_NUMBER, fullName="R2D2", grade="x")
    exc = raised(lambda: m.Employee.model_validate(data))
    assert exc.error_count() == 3
    assert exc.title == "Employee"
    assert sorted(e["type"] for e in exc.errors()) == [
        "int_parsing",
        "string_pattern_mismatch",
        "value_error",
    ]
