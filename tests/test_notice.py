"""Notification of purpose, retention periods, automatic purging and the records command's
error handling."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import pytest
from click.testing import CliRunner

import purposeguard as pg
from purposeguard.cli.records import records
from purposeguard.exceptions import ConfigurationError


def _policy(base: pg.Policy, **update: object) -> pg.Policy:
    return base.model_copy(update=update)


def test_notice_of_a_strict_field_lists_only_its_closed_purposes(
    configured: pg.Policy, isolated: None
) -> None:
    class Employee(pg.GuardedModel):
        employee_id: Annotated[str, pg.SubjectId]
        name: Annotated[str, pg.CollectedFor("tax", "contract")]
        my_number: Annotated[str, pg.CollectedFor("tax", "social_insurance", category="my_number")]

    notice = pg.purpose_notice(Employee)
    by_field = {f.field: f for f in notice.fields}
    assert sorted(by_field) == ["my_number", "name"]
    strict = by_field["my_number"]
    assert strict.strict
    assert strict.category == "my_number"
    assert set(strict.usable_for) == {
        p for p in configured.purposes if p.split(".")[0] in ("tax", "social_insurance")
    }
    assert dict(strict.descriptions)["tax"].startswith("My Number basic policy")
    assert "contract.customer" in by_field["name"].usable_for
    assert notice.to_json()["schema"] == "purposeguard.purpose_notice/1"


def test_notice_covers_guarded_dataclasses_and_includes_the_subjects_status(
    configured: pg.Policy, isolated: None
) -> None:
    @pg.guarded
    @dataclasses.dataclass
    class Visitor:
        badge: Annotated[str, pg.CollectedFor("security")]

    registry = pg.Registry(refresh_interval=None)
    pg.configure(registry=registry)
    registry.suspend_use("v-1", ["security"])
    notice = pg.purpose_notice(Visitor, subject="v-1")
    assert [f.field for f in notice.fields] == ["badge"]
    assert notice.subject_status is not None
    assert notice.subject_status["suspended_use"] == ["security"]


def test_notice_needs_a_policy() -> None:
    with pytest.raises(ConfigurationError, match="no policy"):
        pg.purpose_notice(object)


def test_retention_for_a_field_comes_from_its_policy_entry_or_its_category(
    configured: pg.Policy, isolated: None
) -> None:
    class Contact:
        email: str = ""
        phone: str = ""

    path = f"{Contact.__module__}.{Contact.__qualname__}"
    categories = {
        **configured.categories,
        "contact": pg.Category(description="contact details", retention="1y"),
    }
    fields = {
        f"{path}.email": pg.FieldTag(collected_for=("inquiry",), retention="30d"),
        f"{path}.phone": pg.FieldTag(collected_for=("inquiry",), category="contact"),
    }
    pg.configure(policy=_policy(configured, categories=categories, fields=fields))
    assert pg.retention_for(Contact, "email") == timedelta(days=30)
    assert pg.retention_for(Contact, "phone") == timedelta(days=365)
    notice = pg.purpose_notice(Contact).to_json()
    assert [f["retention_days"] for f in notice["fields"]] == [30, 365]
    pg.configure(policy=None)
    assert pg.retention_for(Contact, "email") is None


def test_check_subject_finds_a_fields_strict_category_so_consent_never_widens_it(
    configured: pg.Policy, isolated: None
) -> None:
    class Employee(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax")]

    path = f"{Employee.__module__}.{Employee.__qualname__}.my_number"
    fields = {path: pg.FieldTag(collected_for=("tax",), category="my_number")}
    pg.configure(policy=_policy(configured, fields=fields))
    registry = pg.Registry(refresh_interval=None)
    pg.configure(registry=registry)
    registry.grant_consent("e", purposes=["marketing"])
    d = pg.check_subject("marketing", subject="e", field=(Employee, "my_number"))
    assert (d.allowed, d.reason) == (False, "not_allowed")
    widened = pg.check_subject("marketing", subject="e", collected_for=("tax",))
    assert (widened.allowed, widened.reason) == (True, "consent")


def test_expired_provision_records_are_purged_after_a_later_provision(
    configured: pg.Policy,
) -> None:
    clock = [datetime(2020, 1, 1, tzinfo=UTC)]
    registry = pg.Registry(refresh_interval=None, clock=lambda: clock[0])
    pg.configure(registry=registry)
    ground = {"basis": pg.LegalGround.REQUIRED_BY_LAW, "justification": "statutory filing"}
    pg.provide("tax_office", subject="s", fields=["name"], **ground)  # type: ignore[arg-type]
    clock[0] += timedelta(days=3 * 365 + 1)
    pg.provide("tax_office", subject="s", fields=["address"], **ground)  # type: ignore[arg-type]
    assert [r.fields for r in registry.records("s")] == [("address",)]


def test_policy_retention_of_provision_records_wins(configured: pg.Policy) -> None:
    policy = _policy(configured, retention=pg.Retention(provision_records="5y"))
    pg.configure(policy=policy)
    registry = pg.Registry(refresh_interval=None, provision_retention=timedelta(days=1))
    assert registry.retention() == timedelta(days=5 * 365)
    pg.configure(policy=_policy(configured, retention=pg.Retention()))
    assert registry.retention() == timedelta(days=1)
    registry.close()


def test_records_command_errors_exit_2_and_empty_is_fine(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(records, ["--subject", "s", "--store", str(tmp_path / "none.db")])
    assert missing.exit_code == 2
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    bad = runner.invoke(records, ["--subject", "s", "--store", str(junk)])
    assert bad.exit_code == 2
    store = tmp_path / "r.db"
    pg.Registry(store, refresh_interval=None).close()
    empty = runner.invoke(records, ["--subject", "s", "--store", str(store), "--format", "json"])
    assert empty.exit_code == 0
    assert json.loads(empty.output)["records"] == []
    table = runner.invoke(records, ["--subject", "s\x1b[31m", "--store", str(store)])
    assert table.exit_code == 0
    assert "\x1b" not in table.output


def test_close_stops_the_poller(tmp_path: Path) -> None:
    registry = pg.Registry(tmp_path / "r.db", refresh_interval=0.01)
    poller = registry._poller
    assert poller is not None
    assert poller.is_alive()
    registry.close()
    assert not poller.is_alive()
    assert "purposeguard-registry" not in [t.name for t in threading.enumerate()]
