"""The policy schema: validation in Python, PolicyError, sources and durations."""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import pytest

import purposeguard as pg

BASE: dict[str, Any] = {"id": "x", "version": "1", "purposes": {"tax": {"description": "t"}}}
FILE_DATA: dict[str, Any] = {"policy": "x", "version": "1", "purposes": BASE["purposes"]}


def test_python_construction_raises_policy_error() -> None:
    with pytest.raises(pg.PolicyError, match=r"purposes\.a\.b: parent purpose 'a'"):
        pg.Policy(id="x", version="1", purposes={"a.b": pg.Purpose(description="d")})
    with pytest.raises(pg.PolicyError, match="compatible with itself"):
        pg.Policy(
            id="x", version="1", purposes={"a": {"description": "d", "compatible_with": ["a"]}}
        )


def test_errors_in_python_name_python_as_the_file() -> None:
    with pytest.raises(pg.PolicyError) as info:
        pg.Policy(**BASE, mode="block")
    assert (info.value.file, info.value.path) == ("<python>", "mode")


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"a.B.c": {"collected_for": ["nope"]}}, "fields.a.B.c.collected_for[0]", "'nope' is not"),
        ({"a.B.c": {"collected_for": ["tax", "Bad"]}}, "fields.a.B.c.collected_for[1]", "not a"),
        (
            {"a.B.c": {"collected_for": ["tax"], "prohibited": ["x"]}},
            "fields.a.B.c.prohibited[0]",
            "'x' is not declared",
        ),
        ({"a.B.c": {"collected_for": []}}, "fields.a.B.c.collected_for", "at least one"),
        ({"a.B.c": {"collected_for": ["tax"], "category": "mn"}}, "fields.a.B.c.category", "'mn'"),
        ({"B.c": {"collected_for": ["tax"]}}, "fields.B.c", "module.Class.field"),
    ],
)
def test_field_tags_are_checked_against_the_policy(
    fields: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(pg.PolicyError, match=message) as info:
        pg.Policy(**BASE, fields=fields)
    assert path == info.value.path


def test_policy_is_immutable(alj_policy: pg.Policy) -> None:
    with pytest.raises(Exception, match="frozen"):
        alj_policy.version = "2"  # type: ignore[misc]


def test_policy_error_pickles() -> None:
    error = pg.PolicyError("bad", file="f.yaml", path="a.b", fix="do x")
    again = pickle.loads(pickle.dumps(error))
    assert (again.file, again.path, again.fix, str(again)) == ("f.yaml", "a.b", "do x", str(error))


def test_policy_error_with_file_names_the_file_and_keeps_the_rest() -> None:
    error = pg.PolicyError("bad", path="a.b", fix="do x").with_file("f.yaml")
    assert (error.file, error.path, error.message, error.fix) == ("f.yaml", "a.b", "bad", "do x")
    assert str(error) == "f.yaml: a.b: bad (do x)"


def test_from_file_data_remembers_the_source_and_names_it_in_errors() -> None:
    policy = pg.Policy.from_file_data(FILE_DATA, source="db:policies/7")
    assert policy.source == "db:policies/7"
    with pytest.raises(pg.PolicyError) as info:
        pg.Policy.from_file_data({**FILE_DATA, "owner": "me"}, source="db:policies/7")
    assert (info.value.file, info.value.path) == ("db:policies/7", "owner")


def test_a_policy_built_in_python_has_no_source() -> None:
    assert pg.Policy(**BASE).source is None


def test_categories_recipients_and_durations_are_validated() -> None:
    with pytest.raises(pg.PolicyError, match="strict category needs"):
        pg.Policy(**BASE, categories={"mn": {"description": "d", "strict": True}})
    with pytest.raises(pg.PolicyError, match="category 'mn' is not declared"):
        pg.Policy(
            **BASE,
            recipients={"r": {"description": "d", "kind": "third_party", "categories": ["mn"]}},
        )
    with pytest.raises(pg.PolicyError, match="duration") as info:
        pg.Policy(**BASE, retention={"provision_records": "3 years"})
    assert info.value.path == "retention.provision_records"


@pytest.mark.parametrize("value", ["3y", "P3Y", "P1095D", timedelta(days=1095)])
def test_retention_is_a_short_or_iso_8601_duration(value: object) -> None:
    policy = pg.Policy(**BASE, retention={"provision_records": value})
    assert timedelta(days=1095) == policy.retention.provision_records


@pytest.mark.parametrize("value", ["0d", "PT0S", "-P1D"])
def test_retention_must_be_positive(value: str) -> None:
    with pytest.raises(pg.PolicyError, match="must be positive"):
        pg.Policy(**BASE, categories={"c": {"description": "d", "retention": value}})
