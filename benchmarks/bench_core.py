"""Core hot paths against a bare call of a trivial function, in the same run (DESIGN §7)."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import structlog

import purposeguard as pg
from purposeguard._compile import compile_policy
from purposeguard._context import _current

from ._timing import ratio, row


def bare(x: int) -> int:
    return x


def run(quick: bool) -> list[dict[str, Any]]:
    number, repeat = (20_000, 5) if quick else (200_000, 9)
    # the app, not the library, configures logging: here, drop log lines entirely
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory(), processors=[])
    policy = pg.testing.make_policy(["recruitment.selection", "marketing"], id="bench")
    pg.configure(policy=policy, mode="enforce")

    @pg.accessor(collected_for=("recruitment",))
    def accessor(x: int) -> int:
        return x

    collected = ("recruitment",)
    rows = []
    token = _current.set("recruitment.selection")
    try:
        rows.append(
            row(
                "accessor call, allowed",
                8,
                ratio(lambda: accessor(1), lambda: bare(1), number=number, repeat=repeat),
                "bare call",
            )
        )
        rows.append(
            row(
                "pg.check decision",
                5,
                ratio(
                    lambda: pg.check("recruitment.selection", collected_for=collected),
                    lambda: bare(1),
                    number=number,
                    repeat=repeat,
                ),
                "bare call",
            )
        )
    finally:
        _current.reset(token)

    def enter_exit() -> None:
        with pg.purpose("recruitment"):
            pass

    rows.append(
        row(
            "pg.purpose enter + exit",
            25,
            ratio(enter_exit, lambda: bare(1), number=number, repeat=repeat),
            "bare call",
        )
    )

    pg.configure(mode="monitor")
    token = _current.set("marketing")
    try:
        rows.append(
            row(
                "denied call, monitor mode (sinks excluded)",
                100,
                ratio(lambda: accessor(1), lambda: bare(1), number=number // 10, repeat=repeat),
                "bare call",
            )
        )
    finally:
        _current.reset(token)
    pg.testing.reset()
    rows.extend(_compile_rows())
    return rows


def large_policy_source() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``purposes`` and ``fields`` of DESIGN §7's compile case: 1,000 purposes (100 roots
    with 9 children each) and 10,000 tagged fields."""
    purposes = {f"p{i}": {"description": "d"} for i in range(100)}
    purposes.update({f"p{i}.c{j}": {"description": "d"} for i in range(100) for j in range(9)})
    fields = {
        f"app.models.M{i}.f{j}": {"collected_for": [f"p{(i + j) % 100}"]}
        for i in range(1000)
        for j in range(10)
    }
    return purposes, fields


def _compile_rows() -> list[dict[str, Any]]:
    """Absolute budgets (DESIGN §7): building and compiling a 1,000-purpose, 10,000-field policy
    with every field's allow set, at most 1 s and 100 MB."""
    purposes, fields = large_policy_source()

    def build() -> None:
        compiled = compile_policy(
            pg.Policy(id="big", version="1", purposes=purposes, fields=fields)
        )
        for tag in compiled.field_tags.values():
            compiled.allowed_set(tag)

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        build()
        best = min(best, time.perf_counter() - started)
    tracemalloc.start()  # measured apart: tracing slows the build several times over
    build()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return [
        {
            "name": "policy compile, 1,000 purposes x 10,000 fields (s)",
            "ratio": round(best, 3),
            "budget": 1.0,
            "unit": "s",
            "baseline": "absolute seconds",
        },
        {
            "name": "policy compile, 1,000 purposes x 10,000 fields (MB)",
            "ratio": round(peak / 1e6, 1),
            "budget": 100.0,
            "unit": "MB",
            "baseline": "absolute peak MB (tracemalloc)",
        },
    ]
