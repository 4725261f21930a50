"""``purposeguard.serialize`` against the real orjson and msgspec.

The supported paths (``to_builtins``, ``json_default`` with ``OPT_PASSTHROUGH_DATACLASS``) read
every guarded value through its field: checked and recorded with channel ``dump``, for models
and every kind of dataclass, flat, nested and in containers, under allowed, denied and missing
purposes, in enforce and monitor mode, with a canary value scanned in the output, the exception
chain and the violation events. Where orjson or msgspec could read a guarded dataclass on their
own (from C, where a failed read can crash the interpreter), the call runs in a subprocess, so
a crash shows as an exit code instead of ending the test run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import orjson
import pytest
from pydantic import BaseModel
from tests.conftest import CANARY

import purposeguard as pg
from purposeguard.serialize import json_default, to_builtins

ALLOWED = "recruitment.selection"
DENIED = "marketing"
RECORD = {"contact_id": "c1", "email": CANARY, "note": "plain"}
KINDS = ["model", "dataclass", "frozen", "slots", "frozen_slots"]
DATACLASS_OPTIONS: dict[str, dict[str, bool]] = {
    "dataclass": {},
    "frozen": {"frozen": True},
    "slots": {"slots": True},
    "frozen_slots": {"frozen": True, "slots": True},
}


@pytest.fixture
def policy(isolated: None) -> pg.Policy:
    return pg.testing.make_policy([ALLOWED, DENIED])


def build(kind: str) -> tuple[type, type]:
    """A guarded record class of ``kind`` and a parent class that holds one (a GuardedModel for
    models, a plain dataclass for dataclasses)."""
    if kind == "model":

        class Contact(pg.GuardedModel):
            contact_id: Annotated[str, pg.SubjectId]
            email: Annotated[str, pg.CollectedFor("recruitment")]
            note: str = "plain"

        class Folder(pg.GuardedModel):
            owner: str
            child: Contact

        return Contact, Folder

    @pg.guarded
    @dataclass(**DATACLASS_OPTIONS[kind])
    class GuardedContact:
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]
        note: str = "plain"

    @dataclass
    class PlainFolder:
        owner: str
        child: GuardedContact

    return GuardedContact, PlainFolder


def shaped(shape: str, contact: type, folder: type) -> tuple[Any, Any, int]:
    """The object to serialize, what it serializes to, and how many guarded reads that takes."""
    if shape == "flat":
        return contact(contact_id="c1", email=CANARY), RECORD, 1
    if shape == "nested":
        child = contact(contact_id="c1", email=CANARY)
        return folder(owner="o", child=child), {"owner": "o", "child": RECORD}, 1
    records = [contact(contact_id="c1", email=CANARY) for _ in range(2)]
    return {"a": [records[0]], "b": (records[1],)}, {"a": [RECORD], "b": [RECORD]}, 2


def purpose_of(who: str) -> contextlib.AbstractContextManager[Any]:
    if who == "none":
        return contextlib.nullcontext()
    return pg.purpose(ALLOWED if who == "allowed" else DENIED)


def orjson_supported(obj: Any) -> Any:
    dumped = orjson.dumps(obj, default=json_default, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    return orjson.loads(dumped)


def msgspec_supported(obj: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(to_builtins(obj), enc_hook=json_default))


SUPPORTED: dict[str, Callable[[Any], Any]] = {
    "to_builtins": to_builtins,
    "orjson": orjson_supported,
    "msgspec": msgspec_supported,
}


def violation_in(exc: BaseException | None) -> pg.PurposeViolation | None:
    """The violation ``exc`` is, or (orjson) carries as its ``__cause__``."""
    if isinstance(exc, pg.PurposeViolation):
        return exc
    if isinstance(exc, orjson.JSONEncodeError) and isinstance(exc.__cause__, pg.PurposeViolation):
        return exc.__cause__
    return None


def text_of(exc: BaseException | None) -> str:
    """Everything a traceback of ``exc`` shows, its chain included."""
    return "" if exc is None else "".join(traceback.format_exception(exc))


# --- the supported paths -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
@pytest.mark.parametrize("who", ["allowed", "denied", "none"])
@pytest.mark.parametrize("shape", ["flat", "nested", "containers"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("serializer", sorted(SUPPORTED))
def test_the_supported_paths_check_and_record_every_guarded_read(
    serializer: str, kind: str, shape: str, who: str, mode: str, policy: pg.Policy
) -> None:
    pg.configure(policy=policy, mode=mode)  # type: ignore[arg-type]
    obj, expected, reads = shaped(shape, *build(kind))
    output: Any = None
    raised: BaseException | None = None
    with pg.testing.capture_violations() as events:
        try:
            with purpose_of(who):
                output = SUPPORTED[serializer](obj)
        except Exception as exc:
            raised = exc

    if who == "allowed":
        assert (expected, [], None) == (output, events, raised)
        return
    assert ["dump"] * len(events) == [e["channel"] for e in events]
    assert all(e["field"].endswith("Contact.email") for e in events)
    if mode == "monitor":  # the value passes, every read recorded
        assert (expected, None) == (output, raised)
        assert [False] * reads == [e["enforced"] for e in events]
    else:
        assert output is None
        assert violation_in(raised) is not None
        if serializer == "orjson":  # orjson raises its own error, the violation as its cause
            assert type(raised) is orjson.JSONEncodeError
        assert [e["enforced"] for e in events] == [True]
        assert CANARY not in text_of(raised)
    assert CANARY not in json.dumps(events, default=str)


def test_a_dataclass_read_by_to_builtins_is_a_dump_at_the_line_that_asked(
    policy: pg.Policy,
) -> None:
    pg.configure(policy=policy, mode="monitor")
    contact, _ = build("slots")
    record = contact(contact_id="c1", email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose(DENIED):
        to_builtins(record)
        _ = record.email  # a plain read stays an attribute read
    assert [e["channel"] for e in events] == ["dump", "attribute"]
    assert all(e["code"].startswith(f"{__file__}:") for e in events)


def test_the_violation_is_recorded_before_orjson_wraps_it(policy: pg.Policy) -> None:
    pg.configure(policy=policy)
    contact, _ = build("dataclass")
    recorded_when_raised: list[int] = []

    def default(obj: Any) -> Any:
        try:
            return json_default(obj)
        except pg.PurposeViolation:
            recorded_when_raised.append(len(events))
            raise

    records = [contact(contact_id="c1", email=CANARY)]
    with (
        pg.testing.capture_violations() as events,
        pg.purpose(DENIED),
        pytest.raises(orjson.JSONEncodeError) as raised,
    ):
        orjson.dumps(records, default=default, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    assert recorded_when_raised == [1]
    cause = raised.value.__cause__
    assert isinstance(cause, pg.PurposeViolation)
    assert (cause.channel, cause.purpose) == ("dump", DENIED)
    assert str(raised.value).startswith("Type is not JSON serializable")


def test_msgspec_raises_the_violation_itself(policy: pg.Policy) -> None:
    pg.configure(policy=policy)
    contact, folder = build("model")
    record = folder(owner="o", child=contact(contact_id="c1", email=CANARY))
    with pg.purpose(DENIED), pytest.raises(pg.PurposeViolation) as raised:
        msgspec.json.encode({"folder": record}, enc_hook=json_default)
    assert raised.value.channel == "dump"


@pytest.mark.parametrize(
    ("on_denied", "expected"),
    [("redact", {"contact_id": "c1", "email": None}), ("omit", {"contact_id": "c1"})],
)
def test_a_model_is_converted_as_its_class_says_a_denied_field_is_dumped(
    on_denied: str, expected: dict[str, Any], policy: pg.Policy
) -> None:
    pg.configure(policy=policy)

    class Contact(pg.GuardedModel):
        purposeguard_on_denied = on_denied  # type: ignore[assignment]
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment")]

    record = Contact(contact_id="c1", email=CANARY)
    with pg.testing.capture_violations() as events, pg.purpose(DENIED):
        converted = to_builtins([record])
        dumped = orjson.loads(orjson.dumps([record], default=json_default))
    assert [expected, expected] == [*converted, *dumped]
    assert [(e["channel"], e["enforced"]) for e in events] == [("dump", True)] * 2


def test_a_plain_pydantic_parent_raises_the_violation_itself(policy: pg.Policy) -> None:
    pg.configure(policy=policy)
    contact, _ = build("model")

    class Holder(BaseModel):
        item: Any

    with pg.purpose(DENIED), pytest.raises(pg.PurposeViolation):
        to_builtins(Holder(item=contact(contact_id="c1", email=CANARY)))
    with pg.purpose(ALLOWED):
        assert to_builtins(Holder(item=contact(contact_id="c1", email=CANARY))) == {"item": RECORD}


def test_json_mode_gives_a_models_json_form(policy: pg.Policy) -> None:
    pg.configure(policy=policy)

    class Event(pg.GuardedModel):
        at: datetime
        email: Annotated[str, pg.CollectedFor("recruitment")]
        tags: frozenset[str] = frozenset({"t"})

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = Event(at=at, email=CANARY)
    with pg.purpose(ALLOWED):
        python = to_builtins(record)
        json_form = to_builtins(record, mode="json")
        written = orjson.loads(orjson.dumps(record, default=json_default))
        own_json = json.loads(record.model_dump_json())
    assert {"at": at, "email": CANARY, "tags": frozenset({"t"})} == python
    assert own_json == json_form == written


def test_containers_become_lists_and_dict_keys_are_kept(policy: pg.Policy) -> None:
    pg.configure(policy=policy)
    contact, _ = build("frozen")
    record = contact(contact_id="c1", email=CANARY)
    with pg.purpose(ALLOWED):
        converted = to_builtins({1: (record,), "s": frozenset({"x"}), "t": {2}, "n": None})
    assert converted == {1: [RECORD], "s": ["x"], "t": [2], "n": None}


# --- what is refused -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sealed_storage_handed_to_a_serializer_is_refused_with_what_to_use(
    kind: str, policy: pg.Policy
) -> None:
    """``vars(record)`` holds the record's vault, not its values: never converted, never
    emitted as ``<guarded>``, under an allowed purpose too; nothing is read."""
    pg.configure(policy=policy)
    contact, _ = build(kind)
    record = contact(contact_id="c1", email=CANARY)
    # what ordinary code reaches around the fields: a model's or dataclass's __dict__, a
    # slotted dataclass's state (what copy and pickle take)
    storage = record.__getstate__() if kind.endswith("slots") else vars(record)
    calls: list[Callable[[], Any]] = [
        lambda: to_builtins(storage),
        lambda: orjson.dumps(storage, default=json_default),
        lambda: msgspec.json.encode(storage, enc_hook=json_default),
    ]
    with pg.testing.capture_violations() as events, pg.purpose(ALLOWED):
        for call in calls:
            with pytest.raises(TypeError) as raised:
                call()
            refusal = raised.value.__cause__ or raised.value
            assert "to_builtins" in str(refusal)
            assert "OPT_PASSTHROUGH_DATACLASS" in str(refusal)
            assert CANARY not in text_of(raised.value)
    assert events == []


def test_json_default_refuses_other_types_naming_them() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"not JSON serializable: .*Opaque; purposeguard"):
        json_default(Opaque())
    with pytest.raises(TypeError) as raised:
        orjson.dumps({"x": Opaque()}, default=json_default)
    assert "Opaque" in str(raised.value.__cause__)


@pytest.mark.parametrize("who", ["allowed", "denied"])
def test_orjson_and_msgspec_refuse_a_guarded_model_without_the_hook(
    who: str, policy: pg.Policy
) -> None:
    pg.configure(policy=policy)
    contact, _ = build("model")
    record = contact(contact_id="c1", email=CANARY)
    with pg.testing.capture_violations() as events, purpose_of(who):
        with pytest.raises(TypeError, match="Contact"):
            orjson.dumps(record)
        with pytest.raises(TypeError, match="Contact"):
            msgspec.json.encode(record)
    assert events == []


# --- msgspec's own dataclass path ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "model"])
def test_msgspec_reads_a_guarded_dataclass_through_its_fields_as_attribute_reads(
    kind: str, mode: str, policy: pg.Policy
) -> None:
    """msgspec encodes every dataclass itself (``enc_hook`` never sees one), reading each field
    through its attribute: checked, recorded as channel ``attribute``. msgspec 0.22 and earlier
    swallowed an exception from that read and left the field out; the test extra asks for 0.23,
    which raises it, and this test notices a change."""
    pg.configure(policy=policy, mode=mode)  # type: ignore[arg-type]
    contact, _ = build(kind)
    record = contact(contact_id="c1", email=CANARY)
    with pg.purpose(ALLOWED):
        assert msgspec.json.decode(msgspec.json.encode(record, enc_hook=json_default)) == RECORD
    with pg.testing.capture_violations() as events, pg.purpose(DENIED):
        if mode == "enforce":
            with pytest.raises(pg.PurposeViolation) as raised:
                msgspec.json.encode(record, enc_hook=json_default)
            assert CANARY not in text_of(raised.value)
        else:
            assert msgspec.json.decode(msgspec.json.encode(record)) == RECORD
    assert [("attribute", mode == "enforce")] == [(e["channel"], e["enforced"]) for e in events]


# --- in a subprocess: where a failed read could crash the interpreter ---------------------------

_CHILD = """
import contextlib, json, sys, traceback
from dataclasses import dataclass
from typing import Annotated

import msgspec, orjson, structlog
import purposeguard as pg
from purposeguard.serialize import json_default, to_builtins

structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # stdout: the results only
args = json.loads(sys.argv[1])
pg.configure(
    policy=pg.testing.make_policy(["recruitment.selection", "marketing"]), mode=args["mode"]
)


@pg.guarded
@dataclass(**args["options"])
class Contact:
    contact_id: Annotated[str, pg.SubjectId]
    email: Annotated[str, pg.CollectedFor("recruitment")]


if args.get("subclass"):  # a plain dataclass subclass, guarded as @dataclass makes it

    @dataclass(**args["options"])
    class Contact(Contact):  # type: ignore[no-redef]
        note: str = "plain"


CALLS = {
    "orjson": lambda o: orjson.dumps(
        o, default=json_default, option=orjson.OPT_PASSTHROUGH_DATACLASS
    ),
    "orjson_default": lambda o: orjson.dumps(o, default=json_default),
    "orjson_bare": orjson.dumps,
    "msgspec": lambda o: msgspec.json.encode(to_builtins(o), enc_hook=json_default),
}
records = [Contact("c1", args["canary"]), Contact("c2", args["canary"])]
purpose = pg.purpose(args["purpose"]) if args["purpose"] else contextlib.nullcontext()
for name in args["calls"]:
    out = error = cause = None
    with pg.testing.capture_violations() as events, purpose:
        try:
            out = CALLS[name](records).decode()
        except Exception as exc:
            error, cause = type(exc).__name__, type(exc.__cause__).__name__
            text = "".join(traceback.format_exception(exc))
            error += " canary" if args["canary"] in text else ""
    print(json.dumps({
        "call": name, "out": out, "error": error, "cause": cause,
        "events": [[e["channel"], e["enforced"]] for e in events],
        "events_hold_the_canary": args["canary"] in json.dumps(events, default=str),
    }), flush=True)
"""


def run_child(
    options: dict[str, bool],
    mode: str,
    purpose: str | None,
    calls: list[str],
    subclass: bool = False,
) -> tuple[int, list[dict[str, Any]]]:
    """The child's exit code (negative: killed by that signal) and one result per call it
    finished; ``subclass``: of records of a plain dataclass subclass of the guarded one."""
    args: dict[str, Any] = {"options": options, "mode": mode, "purpose": purpose}
    args |= {"calls": calls, "subclass": subclass}
    args["canary"] = CANARY
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert CANARY not in done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
@pytest.mark.parametrize("kind", ["slots", "frozen_slots"])
def test_a_slotted_dataclass_under_a_denied_purpose_never_crashes_the_supported_paths(
    kind: str, mode: str
) -> None:
    code, results = run_child(DATACLASS_OPTIONS[kind], mode, DENIED, ["orjson", "msgspec"])
    assert code == 0
    for result in results:
        assert not result["events_hold_the_canary"]
        if mode == "enforce":
            assert (result["out"], result["events"]) == (None, [["dump", True]])
        else:
            assert CANARY in result["out"]
            assert result["events"] == [["dump", False]] * 2
    expected_errors = {
        "enforce": [
            (orjson.JSONEncodeError.__name__, "PurposeViolation"),
            ("PurposeViolation", "NoneType"),
        ],
        "monitor": [(None, None), (None, None)],
    }[mode]
    assert expected_errors == [(r["error"], r["cause"]) for r in results]


# orjson serializes a type as a dataclass itself when __dataclass_fields__ is in the type's own
# __dict__ (unless OPT_PASSTHROUGH_DATACLASS): it writes a guarded dataclass's __dict__ without
# its _-prefixed vault, a partial record, silently; for slots=True it reads each field from C
# and does not check for an exception, so a denied read in enforce mode is a SIGSEGV
# (ijl/orjson#426). So a guarded dataclass keeps __dataclass_fields__ out of its own __dict__
# (purposeguard/_adopt.py), a plain dataclass subclass of one too: orjson hands it to default=.
@pytest.mark.parametrize("subclass", [False, True], ids=["class", "subclass"])
@pytest.mark.parametrize(
    ("mode", "purpose"), [("enforce", ALLOWED), ("enforce", DENIED), ("monitor", DENIED)]
)
@pytest.mark.parametrize("kind", ["dataclass", "slots", "frozen_slots"])
def test_orjson_without_passthrough_refuses_a_guarded_dataclass_loudly(
    kind: str, mode: str, purpose: str, subclass: bool
) -> None:
    code, results = run_child(
        DATACLASS_OPTIONS[kind], mode, purpose, ["orjson_bare", "orjson_default"], subclass
    )
    assert code == 0
    bare, with_default = results
    assert (bare["out"], bare["error"], bare["events"]) == (None, "TypeError", [])
    if purpose == ALLOWED:  # default=json_default alone is then enough
        assert CANARY in with_default["out"]
    else:
        assert [["dump", mode == "enforce"]] == with_default["events"][:1]
