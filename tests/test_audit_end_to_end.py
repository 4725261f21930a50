"""The audit log behind ``pg.configure(audit_log=...)``: real violations, then the CLI reads them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import purposeguard as pg
from purposeguard.cli import verify_log
from purposeguard.cli._commands import cli

KEY = b"end-to-end-key-0123456789"
CANARY = "CANARY-VALUE-7"


def test_monitor_mode_violations_reach_a_verifiable_log(
    tmp_path: Path, alj_policy: pg.Policy
) -> None:
    path = tmp_path / "violations.jsonl"
    pg.configure(policy=alj_policy, mode="monitor", audit_log=path, audit_key=KEY)

    @pg.accessor(collected_for=("recruitment",))
    def load_skill_sheet(applicant_id: str) -> str:
        return CANARY

    with pg.purpose("marketing"):
        for _ in range(3):
            assert load_skill_sheet("a1") == CANARY
    pg.configure(audit_log=None)  # hands over and closes the log

    result = verify_log([str(path)], key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    listed = CliRunner().invoke(cli, ["violations", str(path), "--purpose", "marketing"])
    assert listed.exit_code == 1, listed.output
    assert "load_skill_sheet" in listed.stdout
    assert CANARY not in path.read_text()  # never the value


def test_allowed_uses_write_no_violation(tmp_path: Path, alj_policy: pg.Policy) -> None:
    path = tmp_path / "violations.jsonl"
    pg.configure(policy=alj_policy, audit_log=path, audit_key=KEY)

    @pg.accessor(collected_for=("recruitment",))
    def load(applicant_id: str) -> str:
        return CANARY

    with pg.purpose("recruitment.selection"):
        load("a1")
    pg.configure(audit_log=None)
    assert not path.exists() or CliRunner().invoke(cli, ["violations", str(path)]).exit_code == 0
