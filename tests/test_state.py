"""The one process state and the guard registry: what configure() installs, all or nothing,
and the protocol the core knows the subject registry by."""

from __future__ import annotations

from collections.abc import Container
from typing import Annotated

import pytest

import purposeguard as pg


class Restrictions:
    """A subject registry of the application's own: the SubjectRestrictions protocol, nothing
    more."""

    def __init__(self) -> None:
        self.restricted: Container[str] = frozenset({"s1"})
        self.consenting: Container[str] = frozenset()
        self.closed = False

    def use_suspension(self, subject: str, purpose: str | None) -> str | None:
        return "*" if subject == "s1" else None

    def purpose_consent(self, subject: str, purpose: str) -> str | None:
        return None

    def close(self) -> None:
        self.closed = True


def test_the_core_asks_any_registry_that_keeps_the_protocol(isolated: None) -> None:

    pg.configure(policy=pg.testing.make_policy(["inquiry"]))
    restrictions = Restrictions()
    pg.configure(registry=restrictions)

    class Contact(pg.GuardedModel):
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("inquiry")]

    with pg.purpose("inquiry"):
        assert Contact(contact_id="s2", email="a@example.com").email == "a@example.com"
        with pytest.raises(pg.PurposeViolation, match="suspended"):
            _ = Contact(contact_id="s1", email="b@example.com").email
    pg.configure(registry=None)
    assert not restrictions.closed  # the caller's to close


def test_a_registry_without_the_protocol_is_refused_and_nothing_changes(isolated: None) -> None:
    pg.configure(policy=pg.testing.make_policy(["inquiry"]))
    with pytest.raises(pg.ConfigurationError, match="registry= takes"):
        pg.configure(registry=object(), mode="monitor")  # type: ignore[arg-type]
    assert pg.get_registry() is None
    with pg.testing.capture_violations() as events, pg.purpose("inquiry"):
        pass
    assert events == []


def test_a_policy_a_live_guard_does_not_fit_is_refused_whole(isolated: None) -> None:
    pg.configure(policy=pg.testing.make_policy(["recruitment", "marketing"], id="good"))

    @pg.accessor(collected_for=("recruitment",))
    def load() -> str:
        return "sheet"

    with pytest.raises(pg.PolicyError, match="does not declare: recruitment"):
        pg.configure(policy=pg.testing.make_policy(["marketing"], id="bad"))
    assert pg.get_policy().id == "good"  # type: ignore[union-attr]
    with pg.purpose("recruitment"):
        assert load() == "sheet"


def test_guards_lists_what_is_kept_bound_and_isolated_guards_unbinds_the_rest(
    isolated: None,
) -> None:
    pg.configure(policy=pg.testing.make_policy(["recruitment"]))

    @pg.accessor(collected_for=("recruitment",), name="tests:outer")
    def outer() -> str:
        return "x"

    assert "tests:outer" in {g.name for g in pg.testing.guards()}
    with pg.testing.isolated_guards():
        assert "tests:outer" not in {g.name for g in pg.testing.guards()}
        with pg.purpose("recruitment"), pytest.raises(pg.PurposeViolation, match="no_policy"):
            outer()
    with pg.purpose("recruitment"):
        assert outer() == "x"


def test_a_guard_left_in_a_reference_cycle_never_vetoes_a_policy(isolated: None) -> None:
    import gc

    pg.configure(policy=pg.testing.make_policy(["recruitment"]))

    def define() -> None:
        class Gone(pg.GuardedModel):  # a class is always in a reference cycle
            email: Annotated[str, pg.CollectedFor("recruitment")]

        assert Gone.__purposeguard_fields__  # guarded: its guard is registered

    gc.disable()
    try:
        define()
        pg.configure(policy=pg.testing.make_policy(["marketing"]))  # Gone's purpose is gone
    finally:
        gc.enable()
    assert pg.get_policy().purposes.keys() == {"marketing"}
