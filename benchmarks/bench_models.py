"""Guarded models on their allow paths, as ratios to baselines measured in the same run:

- a guarded field read, allowed, against a bare call of ``def f(x): return x`` (budget 10x);
- a purpose-aware ``model_dump``, allowed, against ``model_dump`` of the same model without
  guards (budget 1.5x); also the serializer alone (``to_python``, without BaseModel's Python
  wrapper, which GuardedModel skips) and ``model_dump_json``, against the same budget.

    python benchmarks/bench_models.py [--quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

import purposeguard as pg

from ._timing import ratio, row

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


def run(quick: bool) -> list[dict[str, Any]]:
    number = 50_000 if quick else 500_000
    dump_number = 5_000 if quick else 50_000
    repeat = 3 if quick else 7
    pg.configure(policy=pg.load_policy(POLICY))
    guarded_cls, plain_cls = _models()
    data = {
        "applicant_id": "a1",
        "name": "Hanako",
        "email": "hanako@example.com",
        "phone": "03-0000-0000",
        "skills": ["python", "sql"],
        "years": 7,
    }
    guarded, plain = guarded_cls(**data), plain_cls(**data)
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
                "purpose-aware serializer alone (to_python), allowed",
                1.5,
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
    pg.testing.reset()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
