"""Core hot paths against a bare call of a trivial function, in the same run (DESIGN §7)."""

from __future__ import annotations

from typing import Any

import structlog

import purposeguard as pg
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
    return rows
