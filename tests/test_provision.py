"""Provision to recipients: consent or one of four legal grounds; entrustment, succession and
joint use recorded as what they are; strict categories only where the policy lists them;
denials are violations; every provision is recorded."""

from __future__ import annotations

import asyncio
import json

import pytest

import purposeguard as pg
from purposeguard.exceptions import ConfigurationError

CANARY = "canary-7f3a9e-secret@example.com"


@pytest.fixture
def registry(configured: pg.Policy) -> pg.Registry:
    reg = pg.Registry(refresh_interval=None)
    pg.configure(registry=reg, subject_key=b"k" * 32)
    return reg


def test_provision_to_a_third_party_with_consent_is_recorded_with_the_consent_ref(
    registry: pg.Registry,
) -> None:
    refs = registry.grant_consent(CANARY, recipients=["partner_events"])
    with pg.purpose("marketing.events"):
        record = pg.provide("partner_events", subject=CANARY, fields=["name", "email"])
    assert (record.basis, record.consent_ref, record.recipient_kind) == (
        "consent",
        refs["partner_events"],
        "third_party",
    )
    assert record.fields == ("name", "email")
    assert record.purpose == "marketing.events"
    assert registry.records(CANARY) == [record]


def test_provision_without_consent_is_a_violation_that_never_holds_the_subject_id(
    registry: pg.Registry,
) -> None:
    with (
        pg.testing.capture_violations() as events,
        pg.purpose("marketing.events"),
        pytest.raises(pg.PurposeViolation) as info,
    ):
        pg.provide("partner_events", subject=CANARY, fields=["email"])
    assert info.value.reason == "no_consent"
    assert info.value.channel == "provision"
    [event] = events
    assert (event["channel"], event["reason"], event["accessor"]) == (
        "provision",
        "no_consent",
        "provision:partner_events",
    )
    assert event["subject"].startswith("hmac-sha256:")
    assert CANARY not in json.dumps(event) + str(info.value)
    assert registry.records(CANARY) == []


def test_monitor_mode_lets_it_through_and_records_what_was_wrong(registry: pg.Registry) -> None:
    pg.configure(mode="monitor")
    with pg.testing.capture_violations() as events, pg.purpose("marketing.events"):
        record = pg.provide("partner_events", subject="s1", fields=["email"])
    assert [e["enforced"] for e in events] == [False]
    assert (record.basis, record.violation) == ("none", "no_consent")


@pytest.mark.parametrize("ground", list(pg.LegalGround))
def test_each_legal_ground_allows_provision_without_consent(
    registry: pg.Registry, ground: pg.LegalGround
) -> None:
    record = pg.provide(
        "partner_events", subject="s1", fields=["name"], basis=ground, justification="why"
    )
    assert (record.basis, record.ground, record.justification) == (
        "legal_ground",
        ground.value,
        "why",
    )


@pytest.mark.parametrize("justification", [None, "", "   "])
def test_a_legal_ground_needs_a_justification(
    registry: pg.Registry, justification: str | None
) -> None:
    with pytest.raises(ConfigurationError, match="justification"):
        pg.provide(
            "tax_office",
            subject="s1",
            fields=["name"],
            basis=pg.LegalGround.REQUIRED_BY_LAW,
            justification=justification,
        )


def test_basis_must_be_a_typed_legal_ground(registry: pg.Registry) -> None:
    with pytest.raises(ConfigurationError, match="LegalGround"):
        pg.provide("tax_office", subject="s", fields=["a"], basis="required_by_law")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="legal ground"):
        pg.provide("tax_office", subject="s", fields=["a"], justification="because")


def test_entrustment_to_a_contractor_is_not_third_party_provision(registry: pg.Registry) -> None:
    registry.suspend_provision("emp1")  # stops provision to third parties, not entrustment
    with pg.purpose("tax.withholding"):
        record = pg.provide(
            "payroll_contractor", subject="emp1", fields=["my_number"], categories=["my_number"]
        )
    assert (record.basis, record.recipient_kind, record.consent_ref) == (
        "entrustment",
        "contractor",
        None,
    )
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as info:
        pg.provide("payroll_contractor", subject="emp1", fields=["name"])
    assert info.value.reason == "not_allowed"
    with pytest.raises(pg.PurposeViolation) as info:
        pg.provide("payroll_contractor", subject="emp1", fields=["name"])
    assert info.value.reason == "no_purpose"


def test_succession_and_joint_use_are_recorded_as_what_they_are(configured: pg.Policy) -> None:
    policy = configured.model_copy(
        update={
            "recipients": {
                **configured.recipients,
                "acquirer": pg.Recipient(description="successor", kind="successor"),
                "group": pg.Recipient(description="group companies", kind="joint_use"),
            }
        }
    )
    pg.configure(policy=policy, registry=pg.Registry(refresh_interval=None))
    assert pg.provide("acquirer", subject="s", fields=["name"]).basis == "succession"
    assert pg.provide("group", subject="s", fields=["name"]).basis == "joint_use"


def test_strict_category_goes_only_to_recipients_that_list_it(registry: pg.Registry) -> None:
    registry.grant_consent("emp1", recipients=["partner_events"])
    with pg.purpose("marketing.events"), pytest.raises(pg.PurposeViolation) as info:
        pg.provide("partner_events", subject="emp1", fields=["my_number"], categories=["my_number"])
    assert info.value.reason == "strict_category"
    with pytest.raises(pg.PurposeViolation, match="strict_category"):  # not even a legal ground
        pg.provide(
            "partner_events",
            subject="emp1",
            fields=["my_number"],
            categories=["my_number"],
            basis=pg.LegalGround.PROTECT_LIFE_BODY_PROPERTY,
            justification="emergency",
        )
    with pytest.raises(ConfigurationError, match="not declared"):
        pg.provide("tax_office", subject="emp1", fields=["x"], categories=["nope"])


def test_suspension_of_provision_blocks_it_but_not_a_legal_ground(registry: pg.Registry) -> None:
    registry.grant_consent("s", recipients=["partner_events"])
    registry.suspend_provision("s", ["partner_events"])
    with pg.purpose("marketing.events"):
        with pytest.raises(pg.PurposeViolation, match="provision_suspended"):
            pg.provide("partner_events", subject="s", fields=["email"])
        registry.resume_provision("s", ["partner_events"])
        assert pg.provide("partner_events", subject="s", fields=["email"]).basis == "consent"
        registry.suspend_provision("s")
        with pytest.raises(pg.PurposeViolation, match="provision_suspended"):
            pg.provide("partner_events", subject="s", fields=["email"])
    record = pg.provide(
        "partner_events",
        subject="s",
        fields=["email"],
        basis=pg.LegalGround.GOVERNMENT_COOPERATION,
        justification="police inquiry under Code of Criminal Procedure art. 197(2)",
    )
    assert record.basis == "legal_ground"


def test_withdrawal_and_suspension_of_use_deny_provision(registry: pg.Registry) -> None:
    registry.grant_consent("s", recipients=["partner_events"])
    registry.withdraw_consent("s", recipients=["partner_events"])
    with pg.purpose("marketing.events"):
        with pytest.raises(pg.PurposeViolation, match="no_consent"):
            pg.provide("partner_events", subject="s", fields=["email"])
        registry.grant_consent("s", recipients=["partner_events"])
        registry.suspend_use("s", ["marketing"])
        with pytest.raises(pg.PurposeViolation, match="suspended"):
            pg.provide("partner_events", subject="s", fields=["email"])


def test_unknown_recipient_and_missing_policy_are_violations(registry: pg.Registry) -> None:
    with pytest.raises(pg.PurposeViolation, match="unknown_recipient"):
        pg.provide("nobody", subject="s", fields=["a"])
    pg.configure(policy=None)
    with pytest.raises(pg.PurposeViolation, match="no_policy"):
        pg.provide("tax_office", subject="s", fields=["a"])


def test_provision_needs_a_registry_to_record_it(configured: pg.Policy) -> None:
    with pytest.raises(ConfigurationError, match="registry"):
        pg.provide("tax_office", subject="s", fields=["a"])


@pytest.mark.parametrize("fields", [[CANARY], "email", [], [("x", 1)]])
def test_fields_are_names_never_values(registry: pg.Registry, fields: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        pg.provide("tax_office", subject="s", fields=fields)  # type: ignore[arg-type]
    assert CANARY not in str(info.value)


def test_providing_checks_on_entry_and_records_only_a_clean_exit(registry: pg.Registry) -> None:
    registry.grant_consent("s", recipients=["partner_events"])
    with pg.purpose("marketing.events"):
        with pytest.raises(RuntimeError), pg.providing("partner_events", subject="s", fields=["e"]):
            raise RuntimeError("send failed")
        assert registry.records("s") == []
        with pg.providing("partner_events", subject="s", fields=["e"]) as handle:
            pass
        assert registry.records("s") == [handle.record]
        sent = []
        with (
            pytest.raises(pg.PurposeViolation),
            pg.providing("tax_office", subject="s", fields=["e"]),
        ):
            sent.append(1)
        assert sent == []


def test_provides_decorates_functions_that_send_data_out(registry: pg.Registry) -> None:
    @pg.provides("partner_events", subject="member_id", fields=["name", "email"])
    def send(member_id: str, payload: dict[str, str]) -> str:
        return "sent"

    @pg.provides("partner_events", subject="member_id", fields=["name"])
    async def asend(member_id: str) -> str:
        return "sent"

    registry.grant_consent("m1", recipients=["partner_events"])
    with pg.purpose("marketing.events"):
        assert send("m1", {}) == "sent"
        assert asyncio.run(asend(member_id="m1")) == "sent"
        with pytest.raises(pg.PurposeViolation):
            send("m2", {})
    assert [r.fields for r in registry.records("m1")] == [("name", "email"), ("name",)]
    assert registry.records("m2") == []
    with pytest.raises(ConfigurationError, match="no such parameter"):
        pg.provides("partner_events", subject="who", fields=["a"])(lambda x: x)


def test_a_provision_violation_names_the_recipient_and_survives_pickling(
    registry: pg.Registry,
) -> None:
    import pickle

    with pg.purpose("marketing.events"), pytest.raises(pg.ProvisionViolation) as info:
        pg.provide("partner_events", subject=CANARY, fields=["email"])
    assert isinstance(info.value, pg.PurposeViolation)
    assert info.value.recipient == "partner_events"
    assert "grant_consent" in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))
    assert (type(again), again.recipient, str(again)) == (
        pg.ProvisionViolation,
        "partner_events",
        str(info.value),
    )


def test_each_provision_is_also_an_audit_event_without_the_subject_or_the_justification(
    registry: pg.Registry,
) -> None:
    import structlog

    with structlog.testing.capture_logs() as logs:
        record = pg.provide(
            "tax_office",
            subject=CANARY,
            fields=["my_number"],
            basis=pg.LegalGround.REQUIRED_BY_LAW,
            justification=f"filing for {CANARY}",
        )
        pg.flush()
    [event] = [e for e in logs if e["event"] == "purposeguard.provision"]
    assert (event["id"], event["basis"], event["ground"]) == (
        record.id,
        "legal_ground",
        "required_by_law",
    )
    assert event["subject"].startswith("hmac-sha256:")
    assert CANARY not in json.dumps(logs, default=str)


def test_every_form_refuses_a_str_where_a_list_of_names_is_meant(registry: pg.Registry) -> None:
    with pytest.raises(ConfigurationError, match="not a str"):
        pg.providing("tax_office", subject="s", fields="email").__enter__()
    with pytest.raises(ConfigurationError, match="not a str"):
        pg.provides("tax_office", subject="s", fields="email")
    with pytest.raises(ConfigurationError, match="not a str"):
        pg.provide("tax_office", subject="s", fields=["email"], categories="my_number")
