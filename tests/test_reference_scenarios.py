"""Scenarios from the reference privacy policy, end to end: guarded models, the subject registry in
a real SQLite file, provision with records, and the answers to data-subject requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from click.testing import CliRunner

import purposeguard as pg
from purposeguard.cli.records import purposes, records

MY_NUMBER = "123456789018"
SKILLS = "canary-skill-sheet-7f3a9e"


@pytest.fixture
def registry(configured: pg.Policy, isolated: None, tmp_path: Path) -> Iterator[pg.Registry]:
    reg = pg.Registry(tmp_path / "registry.db", refresh_interval=0.05)
    pg.configure(registry=reg, subject_key=b"scenario-key-0123456789abcdef")
    yield reg
    reg.close()


def _with_recipient(policy: pg.Policy, name: str, recipient: pg.Recipient) -> pg.Policy:
    return policy.model_copy(update={"recipients": {**policy.recipients, name: recipient}})


def test_recruitment_applicant_skill_sheet(
    registry: pg.Registry, configured: pg.Policy, tmp_path: Path
) -> None:
    """[1]-5 and [1]-10: an applicant's skill sheet is used for selection and for staffing,
    nothing else; the applicant may suspend its use, be told its purposes, and consent to its
    provision to a client."""

    class Applicant(pg.GuardedModel):
        applicant_id: Annotated[str, pg.SubjectId]
        skill_sheet: Annotated[str, pg.CollectedFor("recruitment", "staffing")]

    a = Applicant(applicant_id="app-1", skill_sheet=SKILLS)
    with pg.purpose("recruitment.selection"):
        assert a.skill_sheet == SKILLS
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as denied:
        _ = a.skill_sheet
    assert denied.value.reason == "not_allowed"

    notice = pg.purpose_notice(Applicant, subject="app-1").to_json()
    [field] = notice["fields"]
    assert [p["id"] for p in field["purposes"]] == ["recruitment", "staffing"]
    assert "recruitment.selection" in field["usable_for"]
    assert "marketing" not in field["usable_for"]

    registry.suspend_use("app-1", ["recruitment"])
    with (
        pg.testing.capture_violations() as events,
        pg.purpose("recruitment.selection"),
        pytest.raises(pg.PurposeViolation) as suspended,
    ):
        _ = a.skill_sheet
    assert suspended.value.reason == "suspended"
    assert events[0]["subject"].startswith("hmac-sha256:")
    assert "app-1" not in json.dumps(events)
    assert SKILLS not in json.dumps(events)
    with pg.purpose("staffing"):
        assert a.skill_sheet == SKILLS  # only the suspended purpose stops
    registry.resume_use("app-1")
    with pg.purpose("recruitment.selection"):
        assert a.skill_sheet == SKILLS

    client = pg.Recipient(description="Client choosing engineers", kind="third_party",
                          purposes=("staffing",))  # fmt: skip
    pg.configure(policy=_with_recipient(configured, "client_company", client))
    with pg.purpose("staffing"):
        with pytest.raises(pg.ProvisionViolation, match="no_consent"):
            pg.provide("client_company", subject="app-1", fields=[(Applicant, "skill_sheet")])
        registry.grant_consent("app-1", recipients=["client_company"])
        record = pg.provide("client_company", subject="app-1", fields=[(Applicant, "skill_sheet")])
    assert record.basis == "consent"
    assert record.fields[0].endswith("Applicant.skill_sheet")


def test_inquiry(registry: pg.Registry) -> None:
    """[1]-8 and [1]-9: an inquirer's contact details answer the inquiry; marketing to them
    needs their consent, which they may withdraw; contact details expire."""

    class Inquiry(pg.GuardedModel):
        contact_id: Annotated[str, pg.SubjectId]
        email: Annotated[str, pg.CollectedFor("inquiry")]

    q = Inquiry(contact_id="c-1", email="canary-inquirer@example.com")
    with pg.purpose("inquiry"):
        assert q.email.startswith("canary")
    with pg.purpose("marketing.events"), pytest.raises(pg.PurposeViolation):
        _ = q.email
    registry.grant_consent("c-1", purposes=["marketing.events"])
    with pg.purpose("marketing.events"):
        assert q.email.startswith("canary")
    registry.withdraw_consent("c-1", purposes=["marketing.events"])
    with pg.purpose("marketing.events"), pytest.raises(pg.PurposeViolation):
        _ = q.email
    assert registry.records("c-1") == []  # nothing was provided: the disclosure is empty


def test_my_number_for_withholding_slips(
    registry: pg.Registry, configured: pg.Policy, tmp_path: Path
) -> None:
    """My Number basic policy [2]: My Number is used only for the enumerated tax and social
    insurance operations, even with consent; it goes to the tax office by law and to the
    supervised payroll contractor by entrustment, to nobody else; the employee can see where."""

    class Employee(pg.GuardedModel):
        employee_id: Annotated[str, pg.SubjectId]
        my_number: Annotated[str, pg.CollectedFor("tax", "social_insurance", category="my_number")]

    e = Employee(employee_id="emp-7", my_number=MY_NUMBER)
    registry.grant_consent("emp-7", purposes=["marketing"])
    with pg.purpose("tax.withholding"):
        assert e.my_number == MY_NUMBER
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = e.my_number  # consent never widens a strict category
    field = (Employee, "my_number")
    with pg.purpose("tax.withholding"):
        slip = pg.provide(
            "tax_office",
            subject="emp-7",
            fields=[field],
            categories=["my_number"],
            basis=pg.LegalGround.REQUIRED_BY_LAW,
            justification="Income Tax Act art. 226: withholding slip",
        )
        payroll = pg.provide(
            "payroll_contractor", subject="emp-7", fields=[field], categories=["my_number"]
        )
        registry.grant_consent("emp-7", recipients=["partner_events"])
        with pytest.raises(pg.ProvisionViolation, match="strict_category"):
            pg.provide("partner_events", subject="emp-7", fields=[field], categories=["my_number"])
    assert (slip.basis, payroll.basis) == ("legal_ground", "entrustment")

    runner = CliRunner()
    store = str(tmp_path / "registry.db")
    out = runner.invoke(records, ["--subject", "emp-7", "--store", store, "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert [r["recipient"] for r in doc["records"]] == ["tax_office", "payroll_contractor"]
    assert MY_NUMBER not in out.output
    table = runner.invoke(records, ["--subject", "emp-7", "--store", store])
    assert table.exit_code == 0
    assert "tax_office" in table.output
    assert "2 record(s)" in table.output


def test_emergency_provision_under_the_life_or_body_ground(
    registry: pg.Registry, configured: pg.Policy
) -> None:
    """[2] exception 2: to protect a person's life or body when consent is hard to get, data
    goes to a hospital even though the subject stopped provision; the record says why."""
    hospital = pg.Recipient(description="Emergency hospital", kind="third_party")
    pg.configure(policy=_with_recipient(configured, "hospital", hospital))
    registry.suspend_provision("visitor-3")
    with pytest.raises(pg.ProvisionViolation, match="provision_suspended"):
        pg.provide("hospital", subject="visitor-3", fields=["name", "blood_type"])
    with pg.testing.capture_violations() as events:
        record = pg.provide(
            "hospital",
            subject="visitor-3",
            fields=["name", "blood_type"],
            basis=pg.LegalGround.PROTECT_LIFE_BODY_PROPERTY,
            justification="visitor collapsed in the lobby; unconscious, ambulance called",
        )
    assert events == []
    [exported] = json.loads(registry.export_records("visitor-3"))["records"]
    assert exported["id"] == record.id
    assert exported["ground"] == "protect_life_body_property"
    assert exported["fields"] == ["name", "blood_type"]
    assert exported["justification"].startswith("visitor collapsed")


def test_purposes_command_prints_the_notice(
    configured: pg.Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[4] notification of the purpose of use, from the command line."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        (Path(__file__).resolve().parent.parent / "examples" / "policy.yaml").read_text()
        + "fields:\n  pg_notice_fixture.Visitor.badge:\n    collected_for: [security]\n"
    )
    (tmp_path / "pg_notice_fixture.py").write_text("class Visitor:\n    badge: str = ''\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(
        purposes, ["pg_notice_fixture:Visitor", "--policy", str(policy), "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    [field] = json.loads(out.output)["fields"]
    assert (field["field"], field["purposes"][0]["id"]) == ("badge", "security")
    assert field["usable_for"] == ["security"]
    table = runner.invoke(purposes, ["pg_notice_fixture:Visitor", "--policy", str(policy)])
    assert table.exit_code == 0
    assert "badge" in table.output
    bad = runner.invoke(purposes, ["nowhere:Thing", "--policy", str(policy)])
    assert bad.exit_code == 2


def test_records_command_through_the_installed_cli(registry: pg.Registry, tmp_path: Path) -> None:
    """[4] disclosure of the records of provision, through the real ``purposeguard`` entry
    point in a child process (JSON and table), reading the SQLite file this process wrote."""
    pg.provide(
        "tax_office",
        subject="emp-9",
        fields=["my_number"],
        basis=pg.LegalGround.REQUIRED_BY_LAW,
        justification="Income Tax Act art. 226: withholding slip",
    )
    store = str(tmp_path / "registry.db")
    base = [sys.executable, "-m", "purposeguard.cli", "records", "--subject", "emp-9"]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    as_json = subprocess.run(
        [*base, "--store", store, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["schema"] == "purposeguard.provision_records/1"
    [rec] = doc["records"]
    assert (rec["recipient"], rec["fields"], rec["ground"]) == (
        "tax_office",
        ["my_number"],
        "required_by_law",
    )
    table = subprocess.run(
        [*base, "--store", store], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert table.returncode == 0, table.stderr
    assert "tax_office" in table.stdout
    assert "1 record(s)" in table.stdout
    missing = subprocess.run(
        [*base, "--store", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert missing.returncode == 2
