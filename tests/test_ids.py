"""The purpose-id grammar and the hierarchy helpers."""

from __future__ import annotations

import pytest

from purposeguard._ids import (
    ancestors,
    describe_bad_id,
    is_purpose_id,
    is_within,
    parent,
)


@pytest.mark.parametrize(
    "good", ["a", "recruitment", "recruitment.selection", "a1_b.c2", "x" * 128, "a.b.c.d"]
)
def test_good_ids(good: str) -> None:
    assert is_purpose_id(good)


@pytest.mark.parametrize(
    "bad",
    ["", "A", "a.", ".a", "a..b", "1a", "a-b", "a b", "a.B", "x" * 129, "é", "a\n", None, 3, b"a"],
)
def test_bad_ids(bad: object) -> None:
    assert not is_purpose_id(bad)


def test_describe_bad_id_never_echoes_long_or_odd_values() -> None:
    assert "secret" not in describe_bad_id("secret-" * 30)
    assert "<redacted>" in describe_bad_id("\x1b[31mred")
    assert "'Bad' is not a purpose id" in describe_bad_id("Bad")
    assert "not bytes" in describe_bad_id(b"x").replace("a string, not bytes", "not bytes")


def test_hierarchy() -> None:
    assert parent("a.b.c") == "a.b"
    assert parent("a") is None
    assert list(ancestors("a.b.c")) == ["a.b", "a"]
    assert is_within("a.b", "a")
    assert is_within("a", "a")
    assert not is_within("ab", "a")  # a prefix of the text is not an ancestor
    assert not is_within("a", "a.b")
