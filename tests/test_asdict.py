"""``dataclasses.asdict``/``astuple`` decide every guarded field before they build anything, so a
denied field after an allowed one leaves no allowed value in a frame local of the violation's
traceback, for the renderers that show locals: the standard library's, structlog's, rich's."""

from __future__ import annotations

import dataclasses
import io
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import pytest
import structlog
from rich.console import Console
from rich.traceback import Traceback
from tests.conftest import CANARY

import purposeguard as pg

ALLOWED = "recruitment"


def renderings(exc: BaseException) -> list[str]:
    """The violation's traceback as renderers that show locals write it."""
    stdlib = "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())
    transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=True)
    structured = repr(transformer((type(exc), exc, exc.__traceback__)))
    console = Console(file=io.StringIO(), width=200)
    console.print(Traceback.from_exception(type(exc), exc, exc.__traceback__, show_locals=True))
    return [stdlib, structured, console.file.getvalue()]  # type: ignore[attr-defined]


def build(options: dict[str, bool]) -> Any:
    @pg.guarded
    @dataclasses.dataclass(**options)
    class Profile:  # every field allowed under ALLOWED
        email: Annotated[str, pg.CollectedFor(ALLOWED)]
        phone: Annotated[str, pg.CollectedFor(ALLOWED)]

    @pg.guarded
    @dataclasses.dataclass(**options)
    class Lead:  # an allowed field, then a denied one
        email: Annotated[str, pg.CollectedFor(ALLOWED)]
        campaign: Annotated[str, pg.CollectedFor("marketing")]

    @dataclasses.dataclass
    class Folder:  # a plain parent: an allowed record, then one with a denied field
        profile: Profile
        leads: list[Lead]

    return Profile, Lead, Folder


@pytest.fixture(params=[{}, {"slots": True}, {"frozen": True}], ids=["dict", "slots", "frozen"])
def classes(request: pytest.FixtureRequest, configured: pg.Policy, isolated: None) -> Any:
    return build(dict(request.param))


@pytest.mark.parametrize("convert", [dataclasses.asdict, dataclasses.astuple])
def test_a_denied_field_after_an_allowed_one_leaves_no_value_in_the_traceback(
    classes: Any, convert: Callable[[Any], Any]
) -> None:
    profile_cls, lead_cls, folder_cls = classes
    lead = lead_cls(email=CANARY, campaign="spring")
    folder = folder_cls(profile_cls(email=CANARY, phone=CANARY + "-p"), [lead])
    for record in (lead, folder):
        with (
            pg.testing.capture_violations() as events,
            pg.purpose(ALLOWED),
            pytest.raises(pg.PurposeViolation) as info,
        ):
            convert(record)
        for text in renderings(info.value):
            assert CANARY not in text
        assert [(e["field"].rpartition(".")[2], e["channel"]) for e in events] == [
            ("campaign", convert.__name__)
        ]


def test_monitor_mode_converts_and_records_each_denied_read_once(classes: Any) -> None:
    pg.configure(mode="monitor")
    _, lead_cls, _ = classes
    with pg.testing.capture_violations() as events, pg.purpose(ALLOWED):
        converted = dataclasses.asdict(lead_cls(email=CANARY, campaign="spring"))
    assert converted == {"email": CANARY, "campaign": "spring"}
    assert [(e["channel"], e["enforced"]) for e in events] == [("asdict", False)]


def test_an_allowed_conversion_is_unchanged(classes: Any) -> None:
    profile_cls, _, folder_cls = classes
    folder = folder_cls(profile_cls(email=CANARY, phone="p"), [])
    with pg.testing.capture_violations() as events, pg.purpose(ALLOWED):
        assert dataclasses.asdict(folder) == {
            "profile": {"email": CANARY, "phone": "p"},
            "leads": [],
        }
        assert dataclasses.astuple(folder) == ((CANARY, "p"), [])
    assert events == []


def test_listing_a_records_fields_is_not_a_read(classes: Any) -> None:
    _, lead_cls, _ = classes
    lead = lead_cls(email=CANARY, campaign="spring")
    with pg.testing.capture_violations() as events:
        assert [f.name for f in dataclasses.fields(lead)] == ["email", "campaign"]
        assert dataclasses.replace(lead, campaign="autumn") is not lead
    assert events == []
