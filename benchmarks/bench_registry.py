"""The subject registry on the decision path: an allowed decision for a subject without
restrictions, with a registry configured, against the same decision without one (budget 2x).

The registry is a real SQLite file holding 10,000 restricted subjects (2,000 with ``--quick``),
with its poller running, so the measurement includes everything a service would have in place.

    python benchmarks/bench_registry.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import purposeguard as pg
from purposeguard.stores.sqlite import SQLiteStore

POLICY = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"


def _best(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def run(quick: bool) -> list[dict[str, Any]]:
    number = 20_000 if quick else 200_000
    rounds = 3 if quick else 7
    subjects = 2_000 if quick else 10_000
    pg.configure(policy=pg.load_policy(POLICY))
    collected = ("recruitment",)

    def with_subject() -> object:
        return pg.check_subject(
            "recruitment.selection", subject="applicant-1", collected_for=collected
        )

    def plain() -> object:
        return pg.check("recruitment.selection", collected_for=collected)

    assert with_subject().allowed  # type: ignore[attr-defined]
    rows: list[dict[str, Any]] = []
    plain_check = without_registry = with_registry = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "registry.db", synchronous="NORMAL")
        registry = pg.Registry(store, refresh_interval=0.5)
        for i in range(subjects):
            registry.store.suspend(f"restricted-{i}", "use", "*", registry.clock())
        registry.refresh()
        assert len(registry.restricted) == subjects
        gc.collect()
        for _ in range(rounds):  # alternate, so that the machine's noise hits all three
            plain_check = min(plain_check, _best(plain, number, 3))
            pg.configure(registry=None)
            without_registry = min(without_registry, _best(with_subject, number, 3))
            pg.configure(registry=registry)
            assert with_subject().allowed  # type: ignore[attr-defined]
            with_registry = min(with_registry, _best(with_subject, number, 3))
        pg.configure(registry=None)
        registry.close()
    baseline = without_registry
    rows.append(
        {
            "name": "registry: allowed, unrestricted subject",
            "ratio": round(with_registry / baseline, 3),
            "budget": 2.0,
            "baseline": "the same check_subject call with no registry configured",
            "ns_per_call": round(with_registry * 1e9, 1),
            "baseline_ns": round(baseline * 1e9, 1),
            "restricted_subjects": subjects,
        }
    )
    rows.append(
        {
            # not the budget: the whole subject layer (its own call, category and
            # retention tests, the registry test) over the plain decision, for information
            "name": "registry: check_subject vs pg.check",
            "ratio": round(with_registry / plain_check, 3),
            "budget": 3.0,
            "baseline": "pg.check with the same arguments (no subject)",
            "ns_per_call": round(with_registry * 1e9, 1),
            "baseline_ns": round(plain_check * 1e9, 1),
        }
    )
    pg.testing.reset()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(args.quick):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
