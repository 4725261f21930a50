"""The deliberate bypasses that stay out of scope (docs/security.md), each shown working.

purposeguard stops accidental and negligent wrong-purpose use. Code that sets out to read a
value around the guards can: these tests show how, so that a change in any of them (for better
or worse) is noticed and the documentation updated.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from tests.conftest import CANARY

import purposeguard as pg
from purposeguard._sealed import Vault


@pytest.fixture
def sealed_record(configured: pg.Policy, isolated: None) -> Any:
    class Applicant(pg.GuardedModel):
        email: Annotated[str, pg.CollectedFor("recruitment")]

    return Applicant(email=CANARY)


def test_the_vaults_attributes(sealed_record: Any) -> None:
    vault = vars(sealed_record)["email"]  # every guarded key holds the record's vault
    assert vault.values == (CANARY,)
    assert object.__getattribute__(vault, "values") == (CANARY,)
    assert Vault.values.__get__(vault, Vault) == (CANARY,)  # the slot's member descriptor


def test_gc_referents(sealed_record: Any) -> None:
    vault = vars(sealed_record)["email"]
    assert any(CANARY in r for r in gc.get_referents(vault) if isinstance(r, tuple))


def test_ctypes_reads_the_slot_memory(sealed_record: Any) -> None:
    vault = vars(sealed_record)["email"]
    found = []
    for index in range(len(Vault.__slots__)):  # slots follow the object header, in order
        address = id(vault) + object.__basicsize__ + index * ctypes.sizeof(ctypes.c_void_p)
        value = ctypes.cast(address, ctypes.POINTER(ctypes.py_object)).contents.value
        found.append(value)
    assert (CANARY,) in found


def test_a_class_swap_to_the_same_layout(sealed_record: Any) -> None:
    class Peek:
        __slots__ = Vault.__slots__

    vault = vars(sealed_record)["email"]
    object.__setattr__(vault, "__class__", Peek)
    try:
        assert vault.values == (CANARY,)
    finally:
        object.__setattr__(vault, "__class__", Vault)


def test_frame_locals_of_code_that_read_under_an_allowed_purpose(sealed_record: Any) -> None:
    def reader() -> Iterator[None]:
        with pg.purpose("recruitment"):
            value = sealed_record.email
        yield  # suspended outside the purpose, the local is still there
        del value

    gen = reader()
    next(gen)
    assert gen.gi_frame is not None
    assert gen.gi_frame.f_locals["value"] == CANARY
    gen.close()


def test_writing_an_unsealed_value_into_dict_is_still_checked(sealed_record: Any) -> None:
    vars(sealed_record)["email"] = CANARY  # around pydantic and purposeguard
    with pg.purpose("marketing"):
        with pytest.raises(pg.PurposeViolation):
            _ = sealed_record.email  # the attribute is still checked
        with pytest.raises(pg.PurposeViolation):
            sealed_record.model_dump()  # and so is the dump: never a plain value unchecked
    with pg.purpose("recruitment"):
        assert sealed_record.model_dump() == {"email": CANARY}


def test_a_plain_model_with_collected_for_is_not_guarded(configured: pg.Policy) -> None:
    from pydantic import BaseModel

    class NotGuarded(BaseModel):  # the marker alone does nothing: subclass GuardedModel
        email: Annotated[str, pg.CollectedFor("recruitment")]

    with pg.purpose("marketing"):
        assert NotGuarded(email=CANARY).email == CANARY
