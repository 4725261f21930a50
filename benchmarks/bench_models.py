"""Guarded models on their allow paths, as ratios to baselines measured in the same run:

- a guarded field read, allowed, against a bare call of ``def f(x): return x`` (budget 10x);
- a purpose-aware ``model_dump``, allowed, against ``model_dump`` of the same model without
  guards (budget 1.5x); also the serializer alone (``to_python``, without BaseModel's Python
  wrapper, which GuardedModel skips) and ``model_dump_json``, against the same budget;
- construction of a 10-field record with a ``pg.SubjectId`` and 5 guarded fields, against the
  same record without purposeguard: ``Model(**data)`` and ``Model.model_validate(data)`` of a
  GuardedModel (budget 1.8x), a ``@pg.guarded`` stdlib dataclass (budget 3x);
- memory per instance of those records, guarded over plain (tracemalloc over 10,000 instances;
  budget 1.3x for the model, 2x for the dataclass);
- lists: ``TypeAdapter(list[Model]).dump_json`` of 10,000 guarded models, and a FastAPI
  response of 1,000 guarded models through the ASGI middleware, in-process, under the route's
  declared purpose, against the same plain models (budget 1.5x each).

Where valgrind is installed, a full run also counts the instructions of each construction under
callgrind, which do not move with the load of a shared machine.

    python benchmarks/bench_models.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import shutil
import sys
import time
import tracemalloc
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter

import purposeguard as pg

from ._timing import instructions, ratio, row

POLICY = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"


def f(x: object) -> object:
    return x


def _models() -> tuple[type[BaseModel], type[BaseModel]]:
    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        name: str
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        phone: Annotated[str, pg.CollectedFor("recruitment")]
        skills: list[str]
        years: int

    class PlainApplicant(BaseModel):
        applicant_id: str
        name: str
        email: str
        phone: str
        skills: list[str]
        years: int

    return Applicant, PlainApplicant


DATA = {
    "applicant_id": "a1",
    "name": "Hanako",
    "email": "hanako@example.com",
    "phone": "03-0000-0000",
    "skills": ["python", "sql"],
    "years": 7,
}
WIDE = {
    "applicant_id": "a1",
    "name": "Hanako Yamada",
    "email": "hanako@example.com",
    "phone": "03-0000-0000",
    "address": "1-1 Chiyoda, Tokyo",
    "birth_date": "1990-04-01",
    "skills": ["python", "sql"],
    "years": 7,
    "city": "Tokyo",
    "active": True,
}


def _wide_models() -> tuple[type[BaseModel], type[BaseModel]]:
    """DESIGN §7's construction case: 10 fields, a subject id and 5 guarded."""

    class Record(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        name: Annotated[str, pg.CollectedFor("recruitment")]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        phone: Annotated[str, pg.CollectedFor("recruitment")]
        address: Annotated[str, pg.CollectedFor("recruitment")]
        birth_date: Annotated[str, pg.CollectedFor("recruitment")]
        skills: list[str]
        years: int
        city: str
        active: bool

    class PlainRecord(BaseModel):
        applicant_id: str
        name: str
        email: str
        phone: str
        address: str
        birth_date: str
        skills: list[str]
        years: int
        city: str
        active: bool

    return Record, PlainRecord


def _wide_dataclasses() -> tuple[type, type]:
    @pg.guarded
    @dataclasses.dataclass
    class Record:
        applicant_id: Annotated[str, pg.SubjectId]
        name: Annotated[str, pg.CollectedFor("recruitment")]
        email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]
        phone: Annotated[str, pg.CollectedFor("recruitment")]
        address: Annotated[str, pg.CollectedFor("recruitment")]
        birth_date: Annotated[str, pg.CollectedFor("recruitment")]
        skills: list[str]
        years: int
        city: str
        active: bool

    @dataclasses.dataclass
    class PlainRecord:
        applicant_id: str
        name: str
        email: str
        phone: str
        address: str
        birth_date: str
        skills: list[str]
        years: int
        city: str
        active: bool

    return Record, PlainRecord


def _bytes_per_instance(make: Callable[[], object], n: int) -> float:
    """Bytes that ``n`` live instances hold (tracemalloc), per instance. The list that keeps
    them alive is allocated before tracing starts, so it is not counted."""
    keep: list[object] = [None] * n
    for _ in range(3):
        make()  # warm-up: anything built on first use is not per instance
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            keep[i] = make()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        if gc_was_enabled:
            gc.enable()
    return held / n


def _memory_row(
    name: str, budget: float, guarded: Callable[[], object], plain: Callable[[], object], n: int
) -> dict[str, Any]:
    g, p = _bytes_per_instance(guarded, n), _bytes_per_instance(plain, n)
    return {
        "name": name,
        "ratio": round(g / p, 2),
        "budget": budget,
        "baseline": f"bytes per plain instance (tracemalloc, {n:,} instances)",
        "ns_per_call": None,
        "bytes_per_instance": round(g),
        "baseline_bytes": round(p),
    }


def _construction_rows(quick: bool) -> list[dict[str, Any]]:
    number = 5_000 if quick else 50_000
    repeat = 3 if quick else 7
    model, plain_model = _wide_models()
    record, plain_record = _wide_dataclasses()
    env = {
        "Model": model,
        "Plain": plain_model,
        "Record": record,
        "PlainRecord": plain_record,
        "data": WIDE,
    }
    built = model(**WIDE)
    with pg.purpose("recruitment.selection"):
        assert built.model_dump() == plain_model(**WIDE).model_dump()
        assert dataclasses.asdict(record(**WIDE)) == dataclasses.asdict(plain_record(**WIDE))
    rows = [
        row(
            "GuardedModel(**data), 10 fields, 5 guarded + SubjectId",
            1.8,
            ratio("Model(**data)", "Plain(**data)", env=env, number=number, repeat=repeat),
            "the same plain pydantic model",
        ),
        row(
            "GuardedModel.model_validate(data), 10 fields, 5 guarded + SubjectId",
            1.8,
            ratio(
                "Model.model_validate(data)",
                "Plain.model_validate(data)",
                env=env,
                number=number,
                repeat=repeat,
            ),
            "the same plain pydantic model",
        ),
        row(
            "@pg.guarded dataclass(**data), 10 fields, 5 guarded + SubjectId",
            3.0,
            ratio("Record(**data)", "PlainRecord(**data)", env=env, number=number, repeat=repeat),
            "the same plain dataclass",
        ),
    ]
    n = 2_000 if quick else 10_000
    rows.append(
        _memory_row(
            "memory per GuardedModel instance",
            1.3,
            lambda: model(**WIDE),
            lambda: plain_model(**WIDE),
            n,
        )
    )
    rows.append(
        _memory_row(
            "memory per @pg.guarded dataclass instance",
            2.0,
            lambda: record(**WIDE),
            lambda: plain_record(**WIDE),
            n,
        )
    )
    return rows


def _list_rows(quick: bool) -> list[dict[str, Any]]:
    """DESIGN §7's list rows, for the record the dump rows use (2 of its 6 fields guarded), and
    for a wide record (5 of 10 guarded) with a looser budget of this project's own: pydantic
    calls one Python serializer per guarded field and record, and a serializer that does nothing
    already costs that record about 1.4 times a plain one's dump (docs/decisions.md)."""
    rows = []
    for (model, plain_model), data, label, budget in (
        (_models(), DATA, "", 1.5),
        (_wide_models(), WIDE, ", 5 of 10 fields guarded (no DESIGN budget)", 3.0),
    ):
        n = 10_000
        guarded = [model(**{**data, "applicant_id": f"a{i}"}) for i in range(n)]
        plain = [plain_model(**{**data, "applicant_id": f"a{i}"}) for i in range(n)]
        dump_guarded = TypeAdapter(list[model]).dump_json  # type: ignore[valid-type]
        dump_plain = TypeAdapter(list[plain_model]).dump_json  # type: ignore[valid-type]
        env = {
            "guarded": guarded,
            "plain": plain,
            "dump_guarded": dump_guarded,
            "dump_plain": dump_plain,
        }
        with pg.purpose("recruitment.selection"):
            assert dump_guarded(guarded) == dump_plain(plain)
            dump = ratio(
                "dump_guarded(guarded)",
                "dump_plain(plain)",
                env=env,
                number=2 if quick else 5,
                repeat=3 if quick else 7,
            )
        rows.append(
            row(
                f"TypeAdapter(list[Model]).dump_json, 10,000 guarded models{label}",
                budget,
                dump,
                "the same 10,000 plain models",
            )
        )
        rows.append(
            _fastapi_row(model, plain_model, guarded[:1_000], plain[:1_000], quick, label, budget)
        )
    return rows


def _fastapi_row(
    model: type[BaseModel],
    plain_model: type[BaseModel],
    guarded: list[BaseModel],
    plain: list[BaseModel],
    quick: bool,
    label: str = "",
    budget: float = 1.5,
) -> dict[str, Any]:
    """A FastAPI response of 1,000 records, driven in-process with a synthetic ASGI scope
    (as bench_middleware does): guarded models against the same plain models, both routes
    declared with ``purposes(...)`` behind the same middleware."""
    from fastapi import FastAPI

    from purposeguard.middleware import purposes
    from purposeguard.middleware.asgi import PurposeMiddleware

    api = FastAPI()

    @api.get("/guarded", response_model=list[model])  # type: ignore[valid-type]
    @purposes("recruitment.selection")
    async def guarded_records() -> Any:
        return guarded

    @api.get("/plain", response_model=list[plain_model])  # type: ignore[valid-type]
    @purposes("recruitment.selection")
    async def plain_records() -> Any:
        return plain

    app = PurposeMiddleware(api)
    request = {"type": "http.request", "body": b"", "more_body": False}
    bodies: dict[str, bytes] = {}

    async def receive() -> dict[str, Any]:
        return request

    async def call(path: str) -> None:
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200, (path, message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 80), "headers": [(b"host", b"example")],
        }  # fmt: skip
        await app(scope, receive, send)
        bodies[path] = b"".join(chunks)

    async def batch(path: str, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await call(path)
        return (time.perf_counter() - started) / n

    loop = asyncio.new_event_loop()
    batches, per_batch = (5, 2) if quick else (15, 4)
    best = {"/guarded": float("inf"), "/plain": float("inf")}
    gc_was_enabled = gc.isenabled()
    try:
        for path in best:  # warm-up: builds the middleware's route table and the serializers
            loop.run_until_complete(batch(path, 1))
        assert bodies["/guarded"] == bodies["/plain"]
        for _ in range(batches):  # interleaved, the collector off: the noise hits both alike
            gc.collect()
            gc.disable()
            for path in best:
                best[path] = min(best[path], loop.run_until_complete(batch(path, per_batch)))
            if gc_was_enabled:
                gc.enable()
    finally:
        loop.close()
        if gc_was_enabled:
            gc.enable()
    return row(
        f"FastAPI response of 1,000 guarded models (ASGI middleware, in-process){label}",
        budget,
        (best["/guarded"] / best["/plain"], best["/guarded"], best["/plain"]),
        "the same response of 1,000 plain models",
    )


def run(quick: bool) -> list[dict[str, Any]]:
    number = 50_000 if quick else 500_000
    dump_number = 5_000 if quick else 50_000
    repeat = 3 if quick else 7
    pg.configure(policy=pg.load_policy(POLICY))
    guarded_cls, plain_cls = _models()
    guarded, plain = guarded_cls(**DATA), plain_cls(**DATA)
    env = {"f": f, "x": 1, "record": guarded, "plain": plain}
    rows = []
    with pg.purpose("recruitment.selection"):
        assert guarded.model_dump() == plain.model_dump()
        rows.append(
            row(
                "guarded model field read, allowed",
                10.0,
                ratio("record.email", "f(x)", env=env, number=number, repeat=repeat),
                "bare call f(x)",
            )
        )
        rows.append(
            row(
                "purpose-aware model_dump, allowed",
                1.5,
                ratio(
                    "record.model_dump()",
                    "plain.model_dump()",
                    env=env,
                    number=dump_number,
                    repeat=repeat,
                ),
                "model_dump of the same model unguarded",
            )
        )
        rows.append(
            row(
                "purpose-aware serializer alone (to_python), allowed (no DESIGN budget)",
                2.0,
                ratio(
                    "record.__pydantic_serializer__.to_python(record)",
                    "plain.__pydantic_serializer__.to_python(plain)",
                    env=env,
                    number=dump_number,
                    repeat=repeat,
                ),
                "to_python of the same model unguarded",
            )
        )
        rows.append(
            row(
                "purpose-aware model_dump_json, allowed",
                1.5,
                ratio(
                    "record.model_dump_json()",
                    "plain.model_dump_json()",
                    env=env,
                    number=dump_number,
                    repeat=repeat,
                ),
                "model_dump_json of the same model unguarded",
            )
        )
    rows.extend(_construction_rows(quick))
    rows.extend(_list_rows(quick))
    if not quick and shutil.which("valgrind"):
        rows.extend(_instruction_rows())
    pg.testing.reset()
    return rows


# Instructions per construction under callgrind: the difference between a run that builds N
# records and one that builds none, in a subprocess (CPU-independent, repeatable).


def _instructions(kind: str, n: int) -> int:
    return instructions("bench_models", kind, str(n), env={"PYTHONHASHSEED": "0"})


_DRIVEN = {
    "model": ("GuardedModel(**data), instructions (callgrind)", 1.8, "plain-model"),
    "dataclass": (
        "@pg.guarded dataclass(**data), instructions (callgrind)",
        3.0,
        "plain-dataclass",
    ),
}


def _instruction_rows(n: int = 2_000) -> list[dict[str, Any]]:
    per = {
        kind: (_instructions(kind, n) - _instructions(kind, 0)) / n
        for pair in _DRIVEN.items()
        for kind in (pair[0], pair[1][2])
    }
    return [
        {
            "name": name,
            "ratio": round(per[kind] / per[base], 2),
            "budget": budget,
            "baseline": "instructions per construction of the same plain record",
            "ns_per_call": None,
            "instructions": round(per[kind]),
            "baseline_instructions": round(per[base]),
        }
        for kind, (name, budget, base) in _DRIVEN.items()
    ]


def _drive_only(kind: str, n: int) -> None:
    pg.configure(policy=pg.load_policy(POLICY))
    model, plain_model = _wide_models()
    record, plain_record = _wide_dataclasses()
    build: Callable[[], object] = {
        "model": lambda: model(**WIDE),
        "plain-model": lambda: plain_model(**WIDE),
        "dataclass": lambda: record(**WIDE),
        "plain-dataclass": lambda: plain_record(**WIDE),
    }[kind]
    for _ in range(50):  # warm-up: the same in every run
        build()
    for _ in range(n):
        build()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        _drive_only(sys.argv[2], int(sys.argv[3]))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
