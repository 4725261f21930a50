"""Core hot paths against a bare call of a trivial function, in the same run (DESIGN §7):

- a guarded accessor call and a ``pg.check`` decision, allowed; a denied call in monitor mode;
- a ``pg.cache`` hit, on a plain function and above an accessor, against a
  ``functools.lru_cache`` hit (no DESIGN budget: a regression budget of this project's own);
- ``with pg.purpose(...)`` enter + exit in a function of its own, un-nested (an empty context)
  and as services use it: nested in the request's purpose, in an asyncio task whose context
  holds other variables;
- ``pg.check`` cycling over 10, 1,000 and 10,000 distinct purposes, with 1 and 100 tags;
- compiling a 1,000-purpose, 10,000-field policy (absolute budgets).

Timed paths are source run with an ``env`` as globals, against ``bare(x)``: never both sides
wrapped in a lambda, which adds a call to each and shrinks every ratio.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import tracemalloc
from typing import Any

import structlog

import purposeguard as pg
from purposeguard._compile import compile_policy
from purposeguard._context import _current

from ._timing import ratio, row


def bare(x: object) -> object:
    return x


def enter_exit() -> None:
    """A service function that declares a purpose: a fresh frame on every call, as in a
    request handler (a loop in one frame would let ``purpose`` reuse that frame's object)."""
    with pg.purpose("recruitment"):
        pass


def run(quick: bool) -> list[dict[str, Any]]:
    number, repeat = (20_000, 5) if quick else (200_000, 9)
    # the app, not the library, configures logging: here, drop log lines entirely
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory(), processors=[])
    policy = pg.testing.make_policy(["recruitment.selection", "marketing"], id="bench")
    pg.configure(policy=policy, mode="enforce")

    @pg.accessor(collected_for=("recruitment",))
    def accessor(x: int) -> int:
        return x

    def same(x: int) -> int:
        return x

    # DESIGN §7: the measured path and the baseline are called directly (source run with
    # ``env`` as globals), never both wrapped in a lambda, which adds a call to each side
    env = {
        "pg": pg,
        "bare": bare,
        "accessor": accessor,
        "enter_exit": enter_exit,
        "collected": ("recruitment",),
        "x": 1,
        "lru": functools.lru_cache(maxsize=128)(same),
        "cached": pg.cache(same),
        "cached_accessor": pg.cache(accessor),
    }
    rows = []
    token = _current.set("recruitment.selection")
    try:
        rows.append(
            row(
                "accessor call, allowed",
                8,
                ratio("accessor(x)", "bare(x)", env=env, number=number, repeat=repeat),
                "bare call",
            )
        )
        rows.append(
            row(
                "pg.check decision",
                5,
                ratio(
                    "pg.check('recruitment.selection', collected_for=collected)",
                    "bare(x)",
                    env=env,
                    number=number,
                    repeat=repeat,
                ),
                "bare call",
            )
        )
        rows.extend(_cache_rows(env, number, repeat))
    finally:
        _current.reset(token)

    rows.append(
        row(
            "pg.purpose enter + exit",
            25,
            ratio("enter_exit()", "bare(x)", env=env, number=number, repeat=repeat),
            "bare call (the path includes its function's own call)",
        )
    )
    rows.append(_nested_purpose_row(env, number, repeat))

    pg.configure(mode="monitor")
    token = _current.set("marketing")
    try:
        rows.append(
            row(
                "denied call, monitor mode (sinks excluded)",
                100,
                ratio("accessor(x)", "bare(x)", env=env, number=number // 10, repeat=repeat),
                "bare call",
            )
        )
    finally:
        _current.reset(token)
    pg.testing.reset()
    with pg.testing.isolated_guards():  # the accessor above names purposes these policies lack
        rows.extend(_check_cycle_rows(quick))
    rows.extend(_compile_rows())
    return rows


def _cache_rows(env: dict[str, Any], number: int, repeat: int) -> list[dict[str, Any]]:
    """A ``pg.cache`` hit (under the purpose that filled it) against a ``functools.lru_cache``
    hit of the same function: the price of keying by purpose and policy, and, above an
    accessor, of the accessor's check. No DESIGN budget; 12x is this project's own."""
    for fill in ("lru(x)", "cached(x)", "cached_accessor(x)"):
        exec(fill, env)
    rows = [
        row(
            f"pg.cache hit{label} (no DESIGN budget)",
            12,
            ratio(f"{name}(x)", "lru(x)", env=env, number=number, repeat=repeat),
            "functools.lru_cache hit",
        )
        for label, name in (("", "cached"), (", above an accessor", "cached_accessor"))
    ]
    assert env["cached"].cache_info().misses == env["cached_accessor"].cache_info().misses == 1
    return rows


# Context variables a service has set when a handler runs: OpenTelemetry's context, request
# fields bound with structlog.contextvars (one variable per key), an error tracker's scope.
_SERVICE_VARS = tuple(
    contextvars.ContextVar[object](name)
    for name in (
        "opentelemetry_context",
        "structlog_request_id",
        "structlog_route",
        "structlog_user",
        "sentry_scope",
        "app_tenant",
    )
)


def _nested_purpose_row(env: dict[str, Any], number: int, repeat: int) -> dict[str, Any]:
    """``with pg.purpose(...)`` as services use it: inside a running asyncio task, with the
    request's purpose already active (the middleware set it) and other context variables set.
    Each ``ContextVar.set``/``reset`` copies the context's HAMT node, so this costs more than
    the un-nested row, whose context is empty."""

    async def request() -> tuple[float, float, float]:
        for var in _SERVICE_VARS:
            var.set(object())
        with pg.purpose("recruitment.selection"):  # what the middleware does for the route
            return ratio("enter_exit()", "bare(x)", env=env, number=number, repeat=repeat)

    measured = asyncio.run(request())
    return row(
        f"pg.purpose enter + exit, nested (asyncio task, {len(_SERVICE_VARS)} context vars)",
        25,
        measured,
        "bare call (the path includes its function's own call)",
    )


def _check_cycle_rows(quick: bool) -> list[dict[str, Any]]:
    """``pg.check`` when a service asks about many distinct purposes (DESIGN §7: 10 to 10,000
    purposes in use, 1 to 100 tags, each at most 5x a bare call). Each call asks a different
    purpose, in a fixed cycle over every purpose of the policy, with the same ``collected_for``
    tuple; the baseline loops over the same sequence calling ``bare(p)``, so the ratio is the
    check alone. Every pass over the sequence covers whole cycles."""
    rows = []
    cases = [(10, 1), (1_000, 1), (10_000, 1), (10, 100), (10_000, 100)]
    for n_purposes, n_tags in cases:
        asked = [f"svc.p{i}" for i in range(n_purposes)]
        tags = (*(f"tag{j}" for j in range(n_tags - 1)), "svc")  # "svc" allows them all
        pg.configure(
            policy=pg.testing.make_policy([*asked, *tags], id="bench-cycle"), mode="enforce"
        )
        seq = asked * max(1, 10_000 // n_purposes)
        env = {"check": pg.check, "bare": bare, "seq": seq, "tags": tags}
        path = "for p in seq:\n    check(p, collected_for=tags)"
        base = "for p in seq:\n    bare(p)"
        assert all(pg.check(p, collected_for=tags).allowed for p in asked)
        # one sample is a pass over the sequence, or as many as take about a tenth of a second
        started = time.perf_counter()
        exec(path, env)  # warm-up: every decision the cache will keep is made once
        once = time.perf_counter() - started
        passes = max(1, int((0.02 if quick else 0.1) / once))
        measured = ratio(path, base, env=env, number=passes, repeat=2 if quick else 5)
        per = len(seq)
        rows.append(
            row(
                f"pg.check, cycling over {n_purposes:,} purposes, {n_tags} tag"
                + ("s" if n_tags > 1 else ""),
                5,
                (measured[0], measured[1] / per, measured[2] / per),
                "bare(p) over the same sequence",
            )
        )
        pg.testing.reset()
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
