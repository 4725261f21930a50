"""Compilation: closures computed once, generations, per-tag allow sets."""

from __future__ import annotations

import pytest
from benchmarks.bench_core import large_policy_source

import purposeguard as pg
from purposeguard._compile import Tag, compile_policy
from purposeguard.exceptions import ConfigurationError


@pytest.fixture
def policy() -> pg.Policy:
    return pg.testing.make_policy(
        ["recruitment.selection", "marketing.events", "inquiry", "audit"],
        compatible={"audit": ["inquiry"]},
        modes={"marketing": "monitor"},
    )


def test_closures(policy: pg.Policy) -> None:
    compiled = compile_policy(policy)
    assert compiled.below["recruitment"] == {"recruitment", "recruitment.selection"}
    assert compiled.around["recruitment.selection"] == {"recruitment", "recruitment.selection"}
    assert compiled.compatible_into["inquiry"] == {"audit"}
    assert dict(compiled.modes) == {"marketing": "monitor"}
    assert (compiled.id, compiled.version, compiled.default_mode) == ("test", "1", "enforce")


def test_every_compile_has_a_new_generation(policy: pg.Policy) -> None:
    first, second = compile_policy(policy), compile_policy(policy)
    assert second.generation > first.generation


def test_allow_set_is_cached_per_tag(policy: pg.Policy) -> None:
    compiled = compile_policy(policy)
    tag = Tag.of(["inquiry", "recruitment"], ["recruitment.selection"])
    allowed = compiled.allowed_set(tag)
    # ↕P takes recruitment too: an ancestor of a prohibited purpose is prohibited
    assert allowed == {"inquiry", "audit"}
    assert (
        compiled.allowed_set(Tag.of(["recruitment", "inquiry"], ["recruitment.selection"]))
        is allowed
    )


def test_tags_are_order_free_and_reject_strings() -> None:
    assert Tag.of(["b", "a", "a"], ["c"]) == Tag(("a", "b"), ("c",))
    with pytest.raises(ConfigurationError, match="not a str"):
        Tag.of("recruitment")


def test_unknown_purposes_in_a_tag_are_named(policy: pg.Policy) -> None:
    compiled = compile_policy(policy)
    with pytest.raises(pg.PolicyError, match="does not declare: payroll"):
        compiled.check_tag(Tag.of(["payroll", "inquiry"]), "accessor x")


def test_a_large_policy_compiles_with_every_field_tag() -> None:
    """The DESIGN §7 budget for this size (1 s, 100 MB) is held by benchmarks/bench_core.py."""
    purposes, fields = large_policy_source()
    policy = pg.Policy(id="big", version="1", purposes=purposes, fields=fields)
    compiled = compile_policy(policy)
    assert len(compiled.purposes) == 1000
    assert len(compiled.field_tags) == 10_000
    tag = compiled.field_tags["app.models.M3.f4"]
    assert compiled.allowed_set(tag) == compiled.below["p7"]
