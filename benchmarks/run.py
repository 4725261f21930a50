"""Run purposeguard's benchmarks: a table of ratios to same-run baselines, JSON, and a check.

    python -m benchmarks.run                 # full run, table + benchmarks/results.json
    python -m benchmarks.run --quick --check # CI: fewer iterations, fail on a gross regression

Budgets are ratios (DESIGN §7), never absolute times: this machine is shared and noisy. A full
run marks every row against its budget; ``--check`` fails (exit 1) when a ratio exceeds its budget
by more than ``--tolerance`` (default 1.5 times, to ride out noise in short quick runs), after
re-measuring the suspect suites twice and keeping each row's best ratio.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import purposeguard as pg

SUITES = ("bench_core", "bench_models", "bench_middleware", "bench_registry", "bench_policy")


def _exists(name: str) -> bool:
    try:
        importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.{name}":
            return False  # a suite that does not exist yet
        raise
    return True


def _run(suites: list[str], quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in suites:
        module = importlib.import_module(f"benchmarks.{name}")
        # each suite configures its own policy: guards of one suite must not veto the next's
        with pg.testing.isolated_guards():
            try:
                rows.extend({"suite": name, **r} for r in module.run(quick))
            finally:
                pg.testing.reset()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI)")
    parser.add_argument("--check", action="store_true", help="exit 1 on a gross regression")
    parser.add_argument("--tolerance", type=float, default=1.5, help="check: budget multiplier")
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--only", action="append", choices=SUITES, help="run only these suites")
    args = parser.parse_args(argv)

    suites = [name for name in args.only or SUITES if _exists(name)]
    rows = _run(suites, args.quick)
    if args.check:
        # A shared machine can stall one sample run; a real regression survives re-measuring.
        for _ in range(2):
            suspects = {r["suite"] for r in rows if r["ratio"] > r["budget"] * args.tolerance}
            if not suspects:
                break
            again = {(r["suite"], r["name"]): r for r in _run(sorted(suspects), args.quick)}
            rows = [
                min(r, again.get((r["suite"], r["name"]), r), key=lambda x: x["ratio"])
                for r in rows
            ]

    failed = []
    print(f"{'benchmark':<56} {'measured':>9} {'budget':>9}  {'ns/call':>9}  baseline")
    for r in rows:
        over = r["ratio"] > r["budget"]
        gross = r["ratio"] > r["budget"] * args.tolerance
        mark = "FAIL" if gross else ("over" if over else "ok")
        if gross:
            failed.append(r["name"])
        unit = r.get("unit", "x")
        ns = r.get("ns_per_call")
        print(
            f"{r['name']:<56} {r['ratio']:>8.2f}{unit} {r['budget']:>8.2f}{unit}  "
            f"{'' if ns is None else ns:>9}  {r['baseline']}  [{mark}]"
        )
    args.json.write_text(
        json.dumps(
            {
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "quick": args.quick,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.json}")
    if args.check and failed:
        print(
            f"gross regression (> {args.tolerance}x budget): {', '.join(failed)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
