"""Loading a large policy file, YAML and JSON, in absolute seconds (DESIGN §7: at most 2 s)."""

from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import purposeguard as pg


def large_policy_data(roots: int = 1000, models: int = 10_000) -> dict[str, Any]:
    """DESIGN §7's load case: ``roots`` root purposes with 9 children each (10,000 purposes) and
    ``models`` classes of 10 tagged fields each (100,000 fields)."""
    purposes: dict[str, Any] = {}
    for i in range(roots):
        purposes[f"p{i}"] = {"description": "d"}
        purposes.update({f"p{i}.c{j}": {"description": "d"} for j in range(9)})
    fields = {
        f"app.models.M{i}.f{j}": {"collected_for": [f"p{(i + j) % roots}"]}
        for i in range(models)
        for j in range(10)
    }
    return {"policy": "big", "version": "1", "purposes": purposes, "fields": fields}


def write_large_policy(directory: Path, **size: int) -> tuple[Path, Path]:
    """The load case written as a person would write it, as ``big.yaml`` and ``big.json``
    (about 5 MB each at full size)."""
    data = large_policy_data(**size)
    lines = [f"policy: {data['policy']}", f'version: "{data["version"]}"', "purposes:"]
    for pid, spec in data["purposes"].items():
        lines += [f"  {pid}:", f"    description: {spec['description']}"]
    lines.append("fields:")
    for path, tag in data["fields"].items():
        lines += [f"  {path}:", f"    collected_for: [{', '.join(tag['collected_for'])}]"]
    yaml_file, json_file = directory / "big.yaml", directory / "big.json"
    yaml_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json_file.write_text(json.dumps(data), encoding="utf-8")
    return yaml_file, json_file


def _best_load(path: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()  # the previous run's policy is freed before the clock starts, not during
        started = time.perf_counter()
        policy = pg.load_policy(path)
        best = min(best, time.perf_counter() - started)
        del policy
    return best


def run(quick: bool) -> list[dict[str, Any]]:
    # the full case in quick mode too: one load takes about a second
    repeat = 2 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        yaml_file, json_file = write_large_policy(Path(tmp))
        return [
            {
                "name": f"policy load, 10,000 purposes x 100,000 fields, {label} (s)",
                "ratio": round(_best_load(file, repeat), 3),
                "budget": 2.0,
                "unit": "s",
                "baseline": "absolute seconds",
            }
            for label, file in (("YAML", yaml_file), ("JSON", json_file))
        ]
