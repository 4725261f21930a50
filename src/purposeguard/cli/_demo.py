"""``purposeguard demo``: a guarded accessor, an allowed use, a blocked use, a monitored use,
and the violations as a security team sees them (the audit log, verified).

The demo plays the part of an application: it builds its own small policy (the wheel carries no
customer's policy), defines its accessor when it runs (importing this module changes nothing),
and keeps purposeguard's log lines out of its output only while it runs.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import purposeguard as pg

from ._render import quiet_logs
from ._verify import verify_log

DEMO_KEY = b"demo-key-not-for-production"
SKILL_SHEETS = {"A-1001": {"name": "Hanako Yamada", "skills": ["Python", "PostgreSQL"]}}


def demo_policy() -> pg.Policy:
    """Four of the reference company's purposes of use ([1]-5, [1]-7, [1]-10)."""
    return pg.Policy(
        id="alj-demo",
        version="2024-09-01",
        purposes={
            "recruitment": pg.Purpose(description="Recruitment-related information and contact"),
            "recruitment.selection": pg.Purpose(description="Screening applicants"),
            "staffing": pg.Purpose(description="Selecting engineers for client projects"),
            "marketing": pg.Purpose(description="Information about products and services"),
            "marketing.events": pg.Purpose(description="Invitations to seminars and events"),
        },
    )


def _say(text: str = "") -> None:
    print(text)


def main() -> int:
    # The demo is the application here: it decides where logs go, and puts it back afterwards.
    with quiet_logs():
        try:
            return _run()
        finally:
            pg.testing.reset()


def _run() -> int:
    @pg.accessor(collected_for=("recruitment", "staffing"), name="skills:load_skill_sheet")
    def load_skill_sheet(applicant_id: str) -> Mapping[str, object]:
        """Skill sheets were collected for recruitment and staffing selection."""
        return SKILL_SHEETS[applicant_id]

    with tempfile.TemporaryDirectory(prefix="purposeguard-demo-") as tmp:
        log = Path(tmp) / "violations.jsonl"
        policy = demo_policy()
        pg.configure(policy=policy, audit_log=log, audit_key=DEMO_KEY)
        _say(
            f"policy {policy.id}@{policy.version}: {len(policy.purposes)} purposes, mode {policy.mode}"
        )
        _say("accessor: load_skill_sheet(), data collected for: recruitment, staffing\n")

        _say('1. allowed    with pg.purpose("recruitment.selection"): load_skill_sheet("A-1001")')
        with pg.purpose("recruitment.selection"):
            sheet = load_skill_sheet("A-1001")
        _say(f"   -> returned the skill sheet ({len(sheet)} fields)\n")

        _say('2. blocked    with pg.purpose("marketing"): load_skill_sheet("A-1001")')
        try:
            with pg.purpose("marketing"):
                load_skill_sheet("A-1001")
        except pg.PurposeViolation as exc:
            _say(f"   -> PurposeViolation: {exc}\n")

        _say('3. monitored  pg.configure(mode="monitor"); with pg.purpose("marketing.events"): ...')
        pg.configure(mode="monitor")
        with pg.purpose("marketing.events"):
            load_skill_sheet("A-1001")
        _say("   -> let through (monitor mode) and recorded exactly as enforce would\n")
        pg.configure(mode=None)

        _say(f"4. what the security team sees: {log.name} (hash-chained JSON lines)")
        pg.flush()
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "purposeguard.violation":
                keys = ("seq", "ts", "mode", "enforced", "reason", "purpose", "allowed",
                        "accessor", "code")  # fmt: skip
                _say("   " + json.dumps({k: record[k] for k in keys}, ensure_ascii=False))
        pg.configure(audit_log=None)  # closed: sealed with a final checkpoint
        result = verify_log([str(log)], key=DEMO_KEY, expect_genesis=True)
        verdict = "chain intact" if result.exit_code() == 0 else f"FAILED: {result.failure}"
        _say(f"\n   purposeguard verify: {result.records} records, seq {result.first_seq}.."
             f"{result.last_seq}, {verdict}")  # fmt: skip
        _say("\nTry: purposeguard explain --policy examples/policy.yaml --purpose marketing "
             "--collected-for recruitment")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
