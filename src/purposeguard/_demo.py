"""``purposeguard demo``: a guarded accessor, an allowed use, a blocked use, a monitored use,
and the violations as a security team sees them (the audit log, verified)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import structlog

import purposeguard as pg

REFERENCE_POLICY = Path(__file__).with_name("data") / "alj-policy.yaml"

SKILL_SHEETS = {"A-1001": {"name": "Hanako Yamada", "skills": ["Python", "PostgreSQL"]}}


@pg.accessor(collected_for=("recruitment", "staffing"))
def load_skill_sheet(applicant_id: str) -> Mapping[str, object]:
    """Skill sheets were collected for recruitment and staffing selection ([1]-5, [1]-10)."""
    return SKILL_SHEETS[applicant_id]


def _say(text: str = "") -> None:
    print(text)


def main() -> int:
    # The app, not the library, decides where logs go; the demo keeps them out of the way.
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory(), processors=[])
    with tempfile.TemporaryDirectory(prefix="purposeguard-demo-") as tmp:
        log = Path(tmp) / "violations.jsonl"
        policy = pg.load_policy(REFERENCE_POLICY)
        pg.configure(policy=policy, audit_log=log, audit_key=b"demo-key-not-for-production")
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
                shown = {k: record[k] for k in ("seq", "ts", "mode", "enforced", "reason",
                                                "purpose", "allowed", "accessor", "code")}  # fmt: skip
                _say("   " + json.dumps(shown, ensure_ascii=False))
        try:
            from purposeguard.cli import verify_log
        except ImportError:  # pragma: no cover - the CLI extra is missing
            return 0
        result = verify_log([str(log)], key=b"demo-key-not-for-production", expect_genesis=True)
        verdict = "chain intact" if result.exit_code() == 0 else f"FAILED: {result.failure}"
        _say(f"\n   purposeguard verify: {result.records} records, seq {result.first_seq}.."
             f"{result.last_seq}, {verdict}")  # fmt: skip
        _say("\nTry: purposeguard explain --policy examples/policy.yaml --purpose marketing "
             "--collected-for recruitment")  # fmt: skip
        pg.testing.reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
