"""Timing helpers shared by the benchmarks: ratios to a baseline measured in the same run."""

from __future__ import annotations

import gc
import timeit
from collections.abc import Callable
from typing import Any


def per_call(stmt: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``stmt`` over ``number`` calls (one sample)."""
    timer = timeit.Timer(stmt)
    return timer.timeit(number) / number


def ratio(
    path: Callable[[], Any],
    baseline: Callable[[], Any],
    *,
    number: int,
    repeat: int,
) -> tuple[float, float, float]:
    """(ratio, path seconds, baseline seconds): min of ``repeat`` interleaved samples each, so
    that a noisy neighbour slows both sides alike and the minimum is the undisturbed cost."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        path_best = base_best = float("inf")
        for _ in range(repeat):
            base_best = min(base_best, per_call(baseline, number))
            path_best = min(path_best, per_call(path, number))
    finally:
        if gc_was_enabled:
            gc.enable()
    return path_best / base_best, path_best, base_best


def row(name: str, budget: float, measured: tuple[float, float, float], baseline: str) -> dict[str, Any]:
    value, path_s, base_s = measured
    return {
        "name": name,
        "ratio": round(value, 2),
        "budget": budget,
        "baseline": baseline,
        "ns_per_call": round(path_s * 1e9, 1),
        "baseline_ns": round(base_s * 1e9, 1),
    }
