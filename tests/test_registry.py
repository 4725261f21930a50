"""The subject registry: consents widen, suspensions narrow, changes are in force at the next
decision in every thread and, after the refresh interval, in other processes."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import purposeguard as pg
from purposeguard.exceptions import ConfigurationError
from purposeguard.registry import SubjectStatus
from purposeguard.stores.memory import MemoryStore

CANARY = "canary-7f3a9e-secret@example.com"


@pytest.fixture
def registry(configured: pg.Policy) -> pg.Registry:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg)
    return reg


@pytest.fixture
def file_registry(configured: pg.Policy, tmp_path: Path) -> Iterator[pg.Registry]:
    reg = pg.Registry(tmp_path / "registry.db", refresh_interval=0.05)
    pg.configure(registry=reg)
    yield reg
    reg.close()


def allowed(purpose: str, subject: str, collected_for: tuple[str, ...] = ("marketing",)) -> bool:
    return pg.check_subject(purpose, subject=subject, collected_for=collected_for).allowed


def test_a_subject_without_restrictions_is_decided_by_the_policy_alone(
    registry: pg.Registry,
) -> None:
    d = pg.check_subject("marketing.events", subject="alice", collected_for=("marketing",))
    assert d == pg.check("marketing.events", collected_for=("marketing",))
    assert "alice" not in registry.restricted


def test_suspension_of_all_use_denies_every_purpose(registry: pg.Registry) -> None:
    registry.suspend_use("alice")
    d = pg.check_subject("marketing", subject="alice", collected_for=("marketing",))
    assert (d.allowed, d.reason, d.rule.matched) == (False, "suspended", "*")
    assert allowed("marketing", "bob")


def test_suspension_of_some_purposes_covers_them_their_ancestors_and_descendants(
    registry: pg.Registry,
) -> None:
    registry.suspend_use("alice", ["marketing.events"])
    tag = ("marketing", "inquiry")
    assert not allowed("marketing.events", "alice", tag)
    assert not allowed("marketing", "alice", tag)  # broader use includes the suspended one
    assert allowed("marketing.promotion", "alice", tag)
    assert allowed("inquiry", "alice", tag)


def test_resume_use_lifts_the_suspension_at_the_next_decision(registry: pg.Registry) -> None:
    registry.suspend_use("alice", ["marketing"])
    assert not allowed("marketing", "alice")
    assert registry.resume_use("alice", ["marketing"]) == 1
    assert allowed("marketing", "alice")
    assert "alice" not in registry.restricted


def test_consent_to_a_purpose_widens_a_not_allowed_but_never_a_prohibition(
    registry: pg.Registry,
) -> None:
    assert not allowed("marketing.events", "alice", ("inquiry",))
    registry.grant_consent("alice", purposes=["marketing.events"])
    d = pg.check_subject("marketing.events", subject="alice", collected_for=("inquiry",))
    assert (d.allowed, d.reason, d.rule.matched) == (True, "consent", "marketing.events")
    assert not allowed("marketing", "alice", ("inquiry",))  # not the broader purpose
    prohibited = pg.check_subject(
        "marketing.events",
        subject="alice",
        collected_for=("inquiry",),
        prohibited=("marketing",),
    )
    assert (prohibited.allowed, prohibited.reason) == (False, "prohibited")


def test_withdrawal_of_consent_ends_the_widening(registry: pg.Registry) -> None:
    registry.grant_consent("alice", purposes=["marketing"])
    assert allowed("marketing", "alice", ("inquiry",))
    assert registry.withdraw_consent("alice", purposes=["marketing"]) == 1
    assert not allowed("marketing", "alice", ("inquiry",))
    assert registry.status("alice").withdrawn_purposes == frozenset({"marketing"})


def test_consent_never_widens_a_strict_category(registry: pg.Registry) -> None:
    registry.grant_consent("emp1", purposes=["marketing"])
    d = pg.check_subject("marketing", subject="emp1", collected_for=("tax",), category="my_number")
    assert (d.allowed, d.reason) == (False, "not_allowed")


def test_status_lists_consents_withdrawals_and_suspensions(registry: pg.Registry) -> None:
    refs = registry.grant_consent("a", purposes="marketing", recipients=["partner_events"])
    registry.suspend_provision("a", ["tax_office"])
    registry.suspend_use("a", ["recruitment"])
    status = registry.status("a")
    assert status.to_json() == {
        "consented_purposes": ["marketing"],
        "consented_recipients": ["partner_events"],
        "withdrawn_purposes": [],
        "withdrawn_recipients": [],
        "suspended_use": ["recruitment"],
        "suspended_provision": ["tax_office"],
    }
    assert status.consent_for_recipient("partner_events") == refs["partner_events"]
    assert status.provision_suspended("tax_office")
    assert not status.provision_suspended("pension_service")
    assert registry.resume_provision("a") == 1


def test_bad_arguments_are_configuration_errors_that_never_echo_the_subject(
    registry: pg.Registry,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.suspend_use("x" * 300)
    assert "xxxx" not in str(info.value)
    with pytest.raises(ConfigurationError, match="not a purpose id"):
        registry.suspend_use("alice", ["Not A Purpose"])
    with pytest.raises(ConfigurationError, match="recipient"):
        registry.grant_consent("alice", recipients=["two.segments"])
    with pytest.raises(ConfigurationError):
        pg.Registry(refresh_interval=0)
    with pytest.raises(ConfigurationError, match="registry="):
        pg.configure(registry=object())  # type: ignore[arg-type]


def test_a_suspension_is_in_force_at_the_next_decision_in_another_thread(
    file_registry: pg.Registry,
) -> None:
    ready, go, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def reader() -> None:
        with pg.purpose("marketing"):
            seen.append(allowed("marketing", "alice"))
            ready.set()
            go.wait(5)
            seen.append(allowed("marketing", "alice"))
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    ready.wait(5)
    file_registry.suspend_use("alice")
    go.set()
    t.join(5)
    assert seen == [True, False]


def _suspend_in_other_process(path: str, subject: str) -> None:
    reg = pg.Registry(path, refresh_interval=None)
    reg.suspend_use(subject, ["marketing"])
    reg.close()


def test_a_change_in_another_process_is_seen_after_the_refresh_interval(
    file_registry: pg.Registry, tmp_path: Path
) -> None:
    assert allowed("marketing", "alice")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(
        target=_suspend_in_other_process, args=(str(tmp_path / "registry.db"), "alice")
    )
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    deadline = time.monotonic() + 5
    while allowed("marketing", "alice") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not allowed("marketing", "alice")


def test_configure_with_a_path_opens_a_sqlite_registry(
    configured: pg.Policy, tmp_path: Path
) -> None:
    pg.configure(registry=tmp_path / "r.db")
    reg = pg.get_registry()
    assert isinstance(reg, pg.Registry)
    reg.suspend_use("s")
    assert not allowed("marketing", "s")
    pg.configure(registry=None)
    assert allowed("marketing", "s")
    reg.close()


def test_retention_counted_from_collection_denies_with_expired(configured: pg.Policy) -> None:
    now = datetime.now(UTC)
    fresh = pg.check_subject(
        "inquiry",
        subject=None,
        collected_for=("inquiry",),
        collected_at=now - timedelta(days=10),
        retention=timedelta(days=30),
    )
    old = pg.check_subject(
        "inquiry",
        subject=None,
        collected_for=("inquiry",),
        collected_at=now - timedelta(days=31),
        retention=timedelta(days=30),
    )
    assert (fresh.allowed, old.allowed, old.reason) == (True, False, "expired")
    with pytest.raises(ConfigurationError, match="collected_at"):
        pg.check_subject(
            "inquiry", subject=None, collected_for=("inquiry",), retention=timedelta(days=1)
        )


def test_retention_of_a_category_applies_to_its_data() -> None:
    policy = pg.Policy(
        id="t",
        version="1",
        purposes={"inquiry": pg.Purpose(description="inquiries")},
        categories={"contact": pg.Category(description="contact details", retention="30d")},
    )
    pg.configure(policy=policy)
    d = pg.check_subject(
        "inquiry",
        subject=None,
        collected_for=("inquiry",),
        category="contact",
        collected_at=datetime.now(UTC) - timedelta(days=45),
    )
    assert (d.allowed, d.reason) == (False, "expired")
    unknown = pg.check_subject("inquiry", subject=None, collected_for=("inquiry",), category="nope")
    assert unknown.reason == "unknown_category"


def test_records_are_exported_as_json_and_purged_after_the_retention(
    registry: pg.Registry,
) -> None:
    clock = [datetime(2020, 1, 1, tzinfo=UTC)]
    registry.clock = lambda: clock[0]
    pg.provide(
        "tax_office",
        subject=CANARY,
        fields=["my_number"],
        basis=pg.LegalGround.REQUIRED_BY_LAW,
        justification="Income Tax Act art. 226 (withholding slip)",
    )
    doc = json.loads(registry.export_records(CANARY))
    assert doc["schema"] == "purposeguard.provision_records/1"
    assert [r["recipient"] for r in doc["records"]] == ["tax_office"]
    assert doc["retention_days"] == 3 * 365
    clock[0] += timedelta(days=3 * 365 - 1)
    assert registry.purge() == 0
    assert len(registry.records(CANARY)) == 1
    clock[0] += timedelta(days=2)
    # past the period, a disclosure leaves the record out even before it is purged
    assert registry.records(CANARY) == []
    assert json.loads(registry.export_records(CANARY))["records"] == []
    assert len(registry.store.provisions(CANARY)) == 1
    assert registry.purge() == 1
    assert registry.store.provisions(CANARY) == []


def test_memory_store_registry_has_no_poller() -> None:
    reg = pg.Registry(MemoryStore())
    assert reg._poller is None
    reg.close()


# --- properties ----------------------------------------------------------------------------------

PURPOSES = ("marketing", "marketing.events", "marketing.promotion", "inquiry", "recruitment",
            "recruitment.selection", "audit", "tax", "tax.withholding")  # fmt: skip
purpose_sets = st.frozensets(st.sampled_from(PURPOSES), max_size=4)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    consented=purpose_sets,
    withdrawn=purpose_sets,
    collected=st.frozensets(st.sampled_from(PURPOSES), min_size=1, max_size=3),
    purpose=st.sampled_from(PURPOSES),
    suspended=purpose_sets,
)
def test_withdrawing_consent_never_turns_deny_into_allow(
    configured: pg.Policy,
    consented: frozenset[str],
    withdrawn: frozenset[str],
    collected: frozenset[str],
    purpose: str,
    suspended: frozenset[str],
) -> None:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg)
    if consented:
        reg.grant_consent("s", purposes=consented)
    if suspended:
        reg.suspend_use("s", suspended)
    tag = tuple(sorted(collected))
    before = allowed(purpose, "s", tag)
    if withdrawn:
        reg.withdraw_consent("s", purposes=withdrawn)
    after = allowed(purpose, "s", tag)
    assert after <= before
    pg.configure(registry=None)
    reg.close()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    consented=purpose_sets,
    collected=st.frozensets(st.sampled_from(PURPOSES), min_size=1, max_size=3),
    purpose=st.sampled_from(PURPOSES),
    suspend=st.one_of(st.none(), st.sampled_from(PURPOSES)),
)
def test_a_suspension_is_effective_at_the_next_decision(
    configured: pg.Policy,
    consented: frozenset[str],
    collected: frozenset[str],
    purpose: str,
    suspend: str | None,
) -> None:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg)
    if consented:
        reg.grant_consent("s", purposes=consented)
    tag = tuple(sorted(collected))
    before = allowed(purpose, "s", tag)
    reg.suspend_use("s", None if suspend is None else [suspend])
    covered = suspend is None or purpose.startswith(suspend) or suspend.startswith(purpose)
    d = pg.check_subject(purpose, subject="s", collected_for=tag)
    if covered:
        assert not d.allowed
        assert d.reason == "suspended" or not before
    else:
        assert d.allowed == before
    pg.configure(registry=None)
    reg.close()


def test_a_local_change_reads_only_the_changed_subject(
    configured: pg.Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = pg.Registry(tmp_path / "r.db", refresh_interval=None)
    pg.configure(registry=reg)
    reg.suspend_use("a")

    def no_full_read() -> None:
        raise AssertionError("a local change must not read every subject again")

    monkeypatch.setattr(reg.store, "snapshot", no_full_read)
    reg.suspend_use("b")
    reg.grant_consent("c", purposes=["marketing"])
    reg.resume_use("a")
    assert reg.restricted == frozenset({"b"})
    assert reg.consenting == frozenset({"c"})


def test_a_registry_behind_the_trimmed_change_log_reads_everything(
    configured: pg.Policy, tmp_path: Path
) -> None:
    path = tmp_path / "r.db"
    reader = pg.Registry(path, refresh_interval=None)
    writer = pg.Registry(path, refresh_interval=None)
    for n in range(5):
        writer.suspend_use(f"s{n}")
    with writer.store._write() as tx:  # type: ignore[attr-defined]
        tx.execute("DELETE FROM changes")
    reader.sync()
    assert reader.restricted == frozenset(f"s{n}" for n in range(5))
    reader.close()
    writer.close()


def test_configure_closes_a_registry_it_opened_from_a_path_but_not_one_it_was_given(
    configured: pg.Policy, tmp_path: Path
) -> None:
    pg.configure(registry=tmp_path / "a.db")
    opened = pg.get_registry()
    assert opened is not None
    given = pg.Registry(tmp_path / "b.db")
    pg.configure(registry=given)
    assert opened._closed
    pg.testing.reset()
    assert not given._closed
    given.close()


def test_every_change_is_recorded_with_the_subject_hashed(registry: pg.Registry) -> None:
    import structlog

    pg.configure(subject_key=b"k" * 32)
    with structlog.testing.capture_logs() as logs:
        registry.suspend_use(CANARY, ["marketing"])
        registry.resume_use(CANARY)
        registry.grant_consent(CANARY, recipients=["partner_events"])
        pg.flush()
    changes = [e for e in logs if e["event"] == "purposeguard.subject_change"]
    assert [(e["action"], e["purposes"], e["recipients"]) for e in changes] == [
        ("suspend_use", ["marketing"], []),
        ("resume_use", ["*"], []),
        ("grant_consent", [], ["partner_events"]),
    ]
    assert all(e["subject"].startswith("hmac-sha256:") for e in changes)
    assert CANARY not in json.dumps(logs, default=str)


def test_status_is_fresh_after_another_registry_changes_the_subject(
    configured: pg.Policy, tmp_path: Path
) -> None:
    path = tmp_path / "r.db"
    reader = pg.Registry(path, refresh_interval=None)
    writer = pg.Registry(path, refresh_interval=None)
    writer.suspend_use("x", ["marketing"])
    writer.suspend_use("y", ["inquiry"])
    reader.sync()
    assert reader.status("x").suspended_use == frozenset({"marketing"})
    assert reader.status("y").suspended_use == frozenset({"inquiry"})
    writer.suspend_use("x", ["recruitment"])
    reader.sync()
    assert reader.status("x").suspended_use == frozenset({"marketing", "recruitment"})
    writer.resume_use("x")
    reader.sync()
    assert "x" not in reader.restricted
    assert reader.status("x") == SubjectStatus()
    reader.close()
    writer.close()
