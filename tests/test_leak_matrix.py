"""The leak matrix: every channel, by {allowed purpose, denied purpose, no purpose}, by {enforce,
monitor}, by {flat, nested, list of records}, for pydantic models and dataclasses.

A canary value may come out of a channel only where the decision allows it, or in monitor mode
where the use is recorded as a violation; it never comes out through any sink: structlog, the
OTel exporter and metrics, stdlib log records, violation events, exception messages and their
``__cause__``/``__context__`` chains.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import pickle
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Annotated, Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError
from structlog.testing import capture_logs
from tests.conftest import CANARY

import purposeguard as pg

ALLOWED = "recruitment.selection"
DENIED = "marketing"
app_log = logging.getLogger("tests.leak_matrix.app")


def build_pydantic() -> SimpleNamespace:
    class Contact(pg.GuardedModel):
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        note: str = "plain"

    class Folder(pg.GuardedModel):
        owner: str
        child: Contact

    class Batch(pg.GuardedModel):
        owner: str
        children: list[Contact]

    class Holder(BaseModel):  # a plain pydantic parent around a guarded record
        item: Any

    def records() -> dict[str, Any]:
        return {
            "flat": Contact(contact_id="c1", email=CANARY),
            "nested": Folder(owner="o", child=Contact(contact_id="c1", email=CANARY)),
            "list": Batch(
                owner="o",
                children=[
                    Contact(contact_id="c1", email=CANARY),
                    Contact(contact_id="c2", email=CANARY),
                ],
            ),
        }

    adapters = {Contact: TypeAdapter(Contact), Folder: TypeAdapter(Folder)}
    adapters[Batch] = TypeAdapter(Batch)
    return SimpleNamespace(records=records, Holder=Holder, adapters=adapters)


def build_dataclasses() -> SimpleNamespace:
    @pg.guarded
    @dataclass(frozen=True)
    class Contact:
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        note: str = "plain"

    @dataclass
    class Folder:
        owner: str
        child: Contact

    @dataclass
    class Batch:
        owner: str
        children: list[Contact] = field(default_factory=list)

    # FastAPI builds its own TypeAdapter for a response model, away from this frame, so the
    # local names in these (postponed) annotations are resolved here
    for cls, name, tp in ((Folder, "child", Contact), (Batch, "children", list[Contact])):
        cls.__annotations__[name] = cls.__dataclass_fields__[name].type = tp

    def records() -> dict[str, Any]:
        return {
            "flat": Contact("c1", CANARY),
            "nested": Folder("o", Contact("c1", CANARY)),
            "list": Batch("o", [Contact("c1", CANARY), Contact("c2", CANARY)]),
        }

    # created here, not in a comprehension, so that pydantic resolves the local names
    adapters = {Contact: TypeAdapter(Contact), Folder: TypeAdapter(Folder)}
    adapters[Batch] = TypeAdapter(Batch)
    return SimpleNamespace(records=records, adapters=adapters)


def leaves(record: Any) -> list[Any]:
    """The guarded records inside ``record``, reached through untagged fields only."""
    if hasattr(record, "child"):
        return [record.child]
    if hasattr(record, "children"):
        return list(record.children)
    return [record]


def vault_of(record: Any) -> Any:
    """Where a guarded dataclass keeps its guarded values (ordinary code can reach it)."""
    return vars(record)["__purposeguard__"]


def log_it(record: Any) -> None:
    app_log.warning("record %s / %r", record, record)
    structlog.get_logger("tests.app").warning("record", record=record, text=f"{record}")


def fastapi_response(record: Any) -> str:
    """FastAPI's own response serialization: a real app, a real request, ``response_model`` the
    record's class. The request runs in this task's context, so the purpose in force here is the
    request's purpose (as a purpose middleware would set it)."""
    app = FastAPI()

    async def endpoint() -> Any:
        return record

    app.get("/r", response_model=type(record))(endpoint)

    async def get() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/r")
            return f"{response.status_code} {response.text}"

    return asyncio.run(get())


def json_default(record: Any) -> str:
    return json.dumps(record, default=lambda o: getattr(o, "__dict__", repr(o)))


@dataclass(frozen=True)
class Channel:
    name: str
    run: Callable[[Any, SimpleNamespace], Any]
    #: the channel name a violation records, or None if the channel never reads the value
    records: str | None
    #: under an allowed purpose, the output holds the value
    exposes: bool = False
    pickles: bool = False


PYDANTIC = [
    Channel("attribute", lambda r, ns: [c.email for c in leaves(r)], "attribute", True),
    Channel("model_dump", lambda r, ns: r.model_dump(), "dump", True),
    Channel("model_dump_json", lambda r, ns: r.model_dump_json(), "dump", True),
    Channel(
        "model_dump_options",
        lambda r, ns: r.model_dump(exclude_defaults=True, exclude_unset=True, exclude_none=True),
        "dump",
        True,
    ),
    Channel("type_adapter_python", lambda r, ns: ns.adapters[type(r)].dump_python(r), "dump", True),
    Channel("type_adapter_json", lambda r, ns: ns.adapters[type(r)].dump_json(r), "dump", True),
    Channel("parent_dump", lambda r, ns: ns.Holder(item=r).model_dump_json(), "dump", True),
    Channel("fastapi_response", lambda r, ns: fastapi_response(r), "dump", True),
    Channel("dict", lambda r, ns: [dict(c) for c in leaves(r)], "iter", True),
    Channel("iter", lambda r, ns: [list(iter(c)) for c in leaves(r)], "iter", True),
    Channel("eq", lambda r, ns: r == copy.deepcopy(r), "eq"),
    Channel("eq_guess", lambda r, ns: [c.__dict__["email"] == CANARY for c in leaves(r)], "eq"),
    Channel("hash", lambda r, ns: [hash(c.__dict__["email"]) for c in leaves(r)], "hash"),
    Channel(
        "pickle", lambda r, ns: [pickle.dumps(vars(c)) for c in leaves(r)], "pickle", pickles=True
    ),
    Channel("vars", lambda r, ns: vars(r), None),
    Channel("__dict__", lambda r, ns: [c.__dict__ for c in leaves(r)], None),
    Channel("repr", lambda r, ns: repr(r), None),
    Channel("str", lambda r, ns: str(r), None),
    Channel("fstring", lambda r, ns: f"{r} {r!r} {r:}", None),
    Channel("logging", lambda r, ns: log_it(r), None),
    Channel("json_default", lambda r, ns: json_default(r), None),
    Channel("copy", lambda r, ns: copy.copy(r), None),
    Channel("deepcopy", lambda r, ns: copy.deepcopy(r), None),
    Channel("model_copy", lambda r, ns: r.model_copy(update={"note": "x"}, deep=True), None),
    Channel(
        "model_construct",
        lambda r, ns: [type(c).model_construct(**c.__dict__) for c in leaves(r)],
        None,
    ),
]

DATACLASSES = [
    Channel("attribute", lambda r, ns: [c.email for c in leaves(r)], "attribute", True),
    Channel("asdict", lambda r, ns: dataclasses.asdict(r), "asdict", True),
    Channel("astuple", lambda r, ns: dataclasses.astuple(r), "astuple", True),
    Channel("type_adapter_python", lambda r, ns: ns.adapters[type(r)].dump_python(r), "dump", True),
    Channel("type_adapter_json", lambda r, ns: ns.adapters[type(r)].dump_json(r), "dump", True),
    Channel("fastapi_response", lambda r, ns: fastapi_response(r), "dump", True),
    Channel("eq", lambda r, ns: r == copy.deepcopy(r), "eq"),
    # a dataclass keeps its guarded values in one attribute, the vault: a guess meets that
    Channel("eq_guess", lambda r, ns: [vault_of(c) == CANARY for c in leaves(r)], "eq"),
    Channel("hash", lambda r, ns: [hash(c) for c in leaves(r)], "hash"),
    Channel(
        "pickle", lambda r, ns: [pickle.dumps(vars(c)) for c in leaves(r)], "pickle", pickles=True
    ),
    Channel("vars", lambda r, ns: [vars(c) for c in leaves(r)], None),
    Channel("__dict__", lambda r, ns: r.__dict__, None),
    Channel("repr", lambda r, ns: repr(r), None),
    Channel("str", lambda r, ns: str(r), None),
    Channel("fstring", lambda r, ns: f"{r} {r!r}", None),
    Channel("logging", lambda r, ns: log_it(r), None),
    Channel("json_default", lambda r, ns: json_default(r), None),
    Channel("copy", lambda r, ns: copy.copy(r), None),
    Channel("deepcopy", lambda r, ns: copy.deepcopy(r), None),
    Channel("replace", lambda r, ns: [dataclasses.replace(c, note="x") for c in leaves(r)], None),
]

CASES = [pytest.param("pydantic", c, id=f"pydantic-{c.name}") for c in PYDANTIC] + [
    pytest.param("dataclass", c, id=f"dataclass-{c.name}") for c in DATACLASSES
]


def exposed(value: Any, seen: set[int] | None = None) -> bool:
    """True iff the canary can be seen in ``value`` as plain data (objects through their repr)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, str):
        return CANARY in value
    if isinstance(value, bytes | bytearray):
        return CANARY.encode() in value
    if isinstance(value, dict):
        return any(exposed(k, seen) or exposed(v, seen) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(exposed(v, seen) for v in value)
    if value is None or isinstance(value, bool | int | float):
        return False
    return CANARY in repr(value)


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [current.__cause__, current.__context__]


def violation_in(exc: BaseException | None) -> pg.PurposeViolation | None:
    """The violation ``exc`` is or carries. pydantic wraps what a serializer raises in a
    PydanticSerializationError (in JSON mode without a ``__cause__``, so only its message tells);
    GuardedModel's own dump methods raise the violation itself."""
    for item in exception_chain(exc):
        if isinstance(item, pg.PurposeViolation):
            return item
        if isinstance(item, PydanticSerializationError) and "PurposeViolation: " in str(item):
            return pg.PurposeViolation(purpose=None, allowed=(), channel="dump", reason="wrapped")
    return None


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
@pytest.mark.parametrize("who", ["allowed", "denied", "none"])
@pytest.mark.parametrize("shape", ["flat", "nested", "list"])
@pytest.mark.parametrize(("kind", "channel"), CASES)
def test_canary_only_where_the_decision_allows(
    kind: str,
    channel: Channel,
    shape: str,
    who: str,
    mode: str,
    isolated: None,
    alj_policy: pg.Policy,
    spans: InMemorySpanExporter,
    metric_reader: InMemoryMetricReader,
    app_logs: pytest.LogCaptureFixture,
) -> None:
    pg.configure(policy=alj_policy, mode=mode, subject_key=b"k" * 32)  # type: ignore[arg-type]
    ns = build_pydantic() if kind == "pydantic" else build_dataclasses()
    record = ns.records()[shape]
    output: Any = None
    raised: BaseException | None = None
    tracer = trace.get_tracer("tests.leak_matrix")
    with capture_logs() as logs, pg.testing.capture_violations() as events:
        with tracer.start_as_current_span("request"):
            try:
                if who == "none":
                    output = channel.run(record, ns)
                else:
                    with pg.purpose(ALLOWED if who == "allowed" else DENIED):
                        output = channel.run(record, ns)
            except Exception as exc:
                raised = exc
        assert pg.flush()

    violation = violation_in(raised)
    if who == "allowed":
        assert not events
        assert violation is None
        if channel.pickles:
            assert isinstance(raised, pg.SealedPickleError)
        else:
            assert raised is None
        assert channel.exposes == exposed(output)
    elif channel.records is None:  # a sealed channel: nothing is read, nothing leaks
        assert not events
        assert raised is None
        assert not exposed(output)
    else:
        assert events, "a denied use must be recorded"
        assert {channel.records} == {e["channel"] for e in events}
        assert {"no_purpose" if who == "none" else "not_allowed"} == {e["reason"] for e in events}
        assert {mode} == {e["mode"] for e in events}
        assert all(e["subject"] and e["subject"].startswith("hmac-sha256:") for e in events)
        if mode == "enforce":
            assert violation is not None
            assert channel.records == violation.channel
            assert not exposed(output)
        else:
            assert violation is None
            if channel.pickles:
                assert isinstance(raised, pg.SealedPickleError)
            else:
                assert raised is None
            assert channel.exposes == exposed(output)

    # every sink, in every case
    assert not exposed(events)
    assert not exposed(logs)
    for exc in exception_chain(raised):
        assert CANARY not in str(exc)
        assert CANARY not in repr(exc)
        assert not exposed(list(exc.args))
        assert CANARY not in "".join(traceback.format_exception_only(exc))
    for rec in app_logs.records:
        assert CANARY not in rec.getMessage()
        assert CANARY not in app_logs.text
    for span in spans.get_finished_spans():
        assert CANARY not in span.to_json()
    data = metric_reader.get_metrics_data()
    assert data is None or CANARY not in data.to_json()
    if channel.records is not None and who != "allowed":
        assert any(e.get("event") == "purposeguard.violation" for e in logs)
        assert any(
            ev.name == "purposeguard.violation"
            for span in spans.get_finished_spans()
            for ev in span.events
        )
    assert ["c1", "c2"][: len(leaves(record))] == [c.contact_id for c in leaves(record)]
