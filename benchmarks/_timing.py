"""Timing helpers shared by the benchmarks: ratios to a baseline measured in the same run."""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

Stmt = Callable[[], Any] | str


def per_call(stmt: Stmt, number: int, env: dict[str, Any] | None = None) -> float:
    """Seconds per call of ``stmt`` (a callable, or source run with ``env`` as globals) over
    ``number`` calls (one sample)."""
    timer = timeit.Timer(stmt, globals=env)
    return timer.timeit(number) / number


def ratio(
    path: Stmt,
    baseline: Stmt,
    *,
    number: int,
    repeat: int,
    env: dict[str, Any] | None = None,
) -> tuple[float, float, float]:
    """(ratio, path seconds, baseline seconds): min of ``repeat`` interleaved samples each, so
    that a noisy neighbour slows both sides alike and the minimum is the undisturbed cost."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        path_best = base_best = float("inf")
        for _ in range(repeat):
            base_best = min(base_best, per_call(baseline, number, env))
            path_best = min(path_best, per_call(path, number, env))
    finally:
        if gc_was_enabled:
            gc.enable()
    return path_best / base_best, path_best, base_best


def row(
    name: str, budget: float, measured: tuple[float, float, float], baseline: str
) -> dict[str, Any]:
    value, path_s, base_s = measured
    return {
        "name": name,
        "ratio": round(value, 2),
        "budget": budget,
        "baseline": baseline,
        "ns_per_call": round(path_s * 1e9, 1),
        "baseline_ns": round(base_s * 1e9, 1),
    }


def instructions(module: str, *args: str, env: dict[str, str] | None = None) -> int:
    """Instructions executed by ``python -m benchmarks.<module> --drive ARGS`` under callgrind
    (CPU-independent and repeatable): the caller subtracts a run that does nothing."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            f"benchmarks.{module}",
            "--drive",
            *args,
        ],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return int(re.findall(r"Collected : (\d+)", done.stderr)[-1])
