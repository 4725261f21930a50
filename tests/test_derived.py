"""Values derived from guarded fields: a computed field never shows in a repr, a
``functools.cached_property`` and a serializer that would replace a guarded field's checked one
are refused when the class is defined, and a ``model_serializer``'s reads are checked."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from typing import Annotated, Any

import pytest
from pydantic import (
    ConfigDict,
    PlainSerializer,
    WrapSerializer,
    computed_field,
    field_serializer,
    model_serializer,
)
from tests.conftest import CANARY

import purposeguard as pg

ALLOWED = "recruitment"


@pytest.fixture(params=["enforce", "monitor"])
def mode(request: pytest.FixtureRequest, configured: pg.Policy, isolated: None) -> str:
    pg.configure(mode=request.param)
    return str(request.param)


def test_a_computed_field_is_redacted_in_repr_under_every_purpose(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor(ALLOWED)]
        grade: int = 1

        @computed_field  # type: ignore[prop-decorator]
        @property
        def contact(self) -> str:
            return f"mailto:{self.email}"

    record = Applicant(email=CANARY)
    for purpose in (ALLOWED, "marketing", None):
        scope = pg.purpose(purpose) if purpose else contextlib.nullcontext()
        with pg.testing.capture_violations() as events, scope:
            texts = [repr(record), str(record), f"{record}", f"{record!r}"]
            logging.getLogger("app").warning("record %s", record)
        assert all(CANARY not in t for t in texts)
        assert "contact=<guarded>" in texts[0]
        assert "grade=1" in texts[0]
        assert events == []  # nothing was read
    assert CANARY not in caplog.text
    with pg.purpose(ALLOWED):
        assert record.model_dump()["contact"] == f"mailto:{CANARY}"


def test_a_dump_of_a_computed_field_is_a_checked_read(mode: str) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor(ALLOWED)]

        @computed_field  # type: ignore[prop-decorator]
        @property
        def contact(self) -> str:
            return f"mailto:{self.email}"

    record = Applicant(email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        try:
            dumped = str(record.model_dump())
        except pg.PurposeViolation:
            dumped = ""
    assert (CANARY in dumped) == (mode == "monitor")
    assert events
    assert all(e["purpose"] == "marketing" for e in events)


def define_model() -> type:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor(ALLOWED)]

        @functools.cached_property
        def domain(self) -> str:
            return self.email.partition("@")[2]

    return Applicant


def define_dataclass() -> type:
    @pg.guarded
    @dataclasses.dataclass
    class Employee:
        email: Annotated[str, pg.CollectedFor(ALLOWED)]

        @functools.cached_property
        def domain(self) -> str:
            return self.email.partition("@")[2]

    return Employee


@pytest.mark.parametrize("define", [define_model, define_dataclass])
def test_a_cached_property_is_refused_when_the_class_is_defined(
    configured: pg.Policy, isolated: None, define: Any
) -> None:
    with pytest.raises(pg.ConfigurationError, match="cached_property") as info:
        define()
    assert "@property" in str(info.value)


def test_a_field_serializer_of_a_guarded_field_is_refused(
    configured: pg.Policy, isolated: None
) -> None:
    with pytest.raises(pg.ConfigurationError, match="replaces the guarded field's checked"):

        class Applicant(pg.GuardedModel):
            email: Annotated[str, pg.CollectedFor(ALLOWED)]

            @field_serializer("email")
            def lower(self, value: str) -> str:
                return value.lower()


@pytest.mark.parametrize(
    "serializer",
    [PlainSerializer(lambda v: str(v).upper()), WrapSerializer(lambda v, h: h(v))],
    ids=["plain", "wrap"],
)
def test_a_serializer_after_collected_for_is_refused(
    configured: pg.Policy, isolated: None, serializer: Any
) -> None:
    with pytest.raises(pg.ConfigurationError, match=r"before pg\.CollectedFor"):

        class Applicant(pg.GuardedModel):
            email: Annotated[str, pg.CollectedFor(ALLOWED), serializer]


def test_a_serializer_before_collected_for_serializes_the_checked_value(mode: str) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, PlainSerializer(lambda v: v.upper()), pg.CollectedFor(ALLOWED)]

    record = Applicant(email=CANARY)
    with pg.purpose(ALLOWED):
        assert record.model_dump() == {"email": CANARY.upper()}
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        try:
            dumped = record.model_dump_json()
        except pg.PurposeViolation:
            dumped = ""
    assert (CANARY.upper() in dumped) == (mode == "monitor")
    assert [e["channel"] for e in events] == ["dump"]


def test_a_model_serializers_reads_are_checked(mode: str) -> None:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor(ALLOWED)]

        @model_serializer
        def out(self) -> dict[str, str]:
            return {"contact": self.email}

    record = Applicant(email=CANARY)
    with pg.purpose(ALLOWED):
        assert record.model_dump() == {"contact": CANARY}
    with pg.testing.capture_violations() as events, pg.purpose("marketing"):
        try:
            dumped = record.model_dump_json()
        except pg.PurposeViolation:
            dumped = ""
    assert (CANARY in dumped) == (mode == "monitor")
    assert len(events) == 1


@pytest.mark.parametrize("revalidate", ["always", "subclass-instances"])
def test_revalidating_instances_is_refused(
    configured: pg.Policy, isolated: None, revalidate: str
) -> None:
    with pytest.raises(pg.ConfigurationError, match="revalidate_instances"):

        class Applicant(pg.GuardedModel):
            model_config = ConfigDict(revalidate_instances=revalidate)  # type: ignore[typeddict-item]
            email: Annotated[str, pg.CollectedFor(ALLOWED)]
