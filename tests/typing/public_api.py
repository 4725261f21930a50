"""The public API as a type checker sees it: checked by mypy (strict) in CI, never run.

Each ``# type: ignore[code]`` marks a call that must be a type error; mypy's
``warn_unused_ignores`` (part of strict) fails if it is not one any more. ``assert_type`` pins
what a call returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, assert_type

import purposeguard as pg


class Applicant(pg.GuardedModel):
    applicant_id: Annotated[str, pg.SubjectId]
    email: Annotated[str, pg.CollectedFor("recruitment", "inquiry")]


applicant = Applicant(applicant_id="A-1", email="a@example.com")

# GuardedModel keeps pydantic's own signatures: a typo'd keyword is an error, as on BaseModel
assert_type(applicant.model_dump(), dict[str, Any])
assert_type(applicant.model_dump(mode="json", exclude_none=True), dict[str, Any])
assert_type(applicant.model_dump_json(indent=2), str)
assert_type(applicant.model_copy(update={"email": "b@example.com"}), Applicant)
applicant.model_dump(exclude_nonee=True)  # type: ignore[call-arg]
applicant.model_dump_json(indentt=2)  # type: ignore[call-arg]
assert_type(applicant.email, str)


@pg.guarded
@dataclass
class Employee:
    employee_id: Annotated[str, pg.SubjectId]
    my_number: Annotated[str, pg.CollectedFor("tax.withholding", category="my_number")]


assert_type(Employee("E-1", "123456789012"), Employee)


# decorators keep the signature of what they decorate
@pg.accessor(collected_for=("recruitment",))
def load_skill_sheet(applicant_id: str) -> dict[str, str]:
    return {"applicant_id": applicant_id}


assert_type(load_skill_sheet("A-1"), dict[str, str])
load_skill_sheet(1)  # type: ignore[arg-type]


@pg.purpose("recruitment.selection")
def screen(applicant: Applicant) -> bool:
    return True


assert_type(screen(applicant), bool)


@pg.purpose("recruitment.selection")
def each(n: int) -> Iterator[int]:
    yield n


assert_type(each(1), Iterator[int])

with pg.purpose("recruitment") as active:
    assert_type(active, str)
assert_type(pg.current_purpose(), str | None)


# pg.cache keeps the signature, adds functools' cache_info()/cache_clear(), binds as a method
@pg.cache
@pg.accessor(collected_for=("recruitment",))
def cached_sheet(applicant_id: str) -> dict[str, str]:
    return {"applicant_id": applicant_id}


assert_type(cached_sheet("A-1"), dict[str, str])
cached_sheet(1)  # type: ignore[arg-type]
assert_type(cached_sheet.cache_info().hits, int)
cached_sheet.cache_clear()


@pg.cache(maxsize=256, typed=True)
async def fetch_sheet(applicant_id: str) -> str:
    return applicant_id


async def fetch_twice() -> None:
    assert_type(await fetch_sheet("A-1"), str)


class SheetRepo:
    @pg.cache
    def get(self, applicant_id: str) -> int:
        return 1


assert_type(SheetRepo().get("A-1"), int)
SheetRepo().get(1)  # type: ignore[arg-type]
assert_type(SheetRepo.get(SheetRepo(), "A-1"), int)
assert_type(SheetRepo().get.cache_info().currsize, int)
pg.cache(maxsize="big")  # type: ignore[call-overload]

# questions
decision = pg.check("marketing", collected_for=("recruitment",))
assert_type(decision, pg.Decision)
assert_type(decision.allowed, bool)
assert_type(decision.reason, str)
assert_type(pg.explain("marketing", field=(Applicant, "email")), str)
assert_type(pg.check_subject("inquiry", subject="A-1", field=(Applicant, "email")), pg.Decision)
assert_type(pg.purposes_of(Applicant, "email"), frozenset[str])
pg.check("marketing", collected_fr=("recruitment",))  # type: ignore[call-arg]

# configuration
pg.configure(policy=None, mode="monitor")
pg.configure(mode="enforced")  # type: ignore[arg-type]
assert_type(pg.get_policy(), pg.Policy | None)
assert_type(pg.flush(), bool)
assert_type(pg.load_policy("policy.yaml"), pg.Policy)

# provision
record = pg.provide(
    "tax_office",
    subject="E-1",
    fields=[(Employee, "my_number")],
    basis=pg.LegalGround.REQUIRED_BY_LAW,
    justification="statutory withholding slip",
)
assert_type(record.recipient, str)
with pg.providing("tax_office", subject="E-1", fields=["name"]) as handle:
    assert_type(handle, pg.providing)

# errors carry what a handler needs, typed
try:
    load_skill_sheet("A-1")
except pg.PurposeViolation as violation:
    assert_type(violation.reason, str)
    assert_type(violation.purpose, str | None)
    assert_type(violation.allowed, tuple[str, ...])
