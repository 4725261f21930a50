"""The audit log behind ``pg.configure(audit_log=...)``: real violations, then the CLI reads them."""

from __future__ import annotations

import json
import subprocess
import sys
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


_STORM_APP = """
import purposeguard as pg
pg.configure(
    policy=pg.load_policy({policy!r}), mode="monitor", audit_log={log!r}, audit_key=b"k" * 32,
    storm_limit=2, storm_window=3600,
)

@pg.accessor(collected_for=("recruitment",))
def load_skill_sheet(applicant_id):
    return {canary!r}

with pg.purpose("marketing"):
    for _ in range(10):
        load_skill_sheet("a1")
"""  # exits without closing anything: the exit hooks must write the storm's summary


def test_a_storm_summary_pending_at_exit_reaches_the_log(tmp_path: Path) -> None:
    path = tmp_path / "violations.jsonl"
    policy = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"
    app = _STORM_APP.format(policy=str(policy), log=str(path), canary=CANARY)
    proc = subprocess.run(
        [sys.executable, "-c", app], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr

    records = [json.loads(line) for line in path.read_text().splitlines()]
    events = [r["event"] for r in records]
    assert events.count("purposeguard.violation") == 2
    assert [r["count"] for r in records if r["event"] == "purposeguard.violation_summary"] == [8]
    result = verify_log([str(path)], key=b"k" * 32, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)
    summary = CliRunner().invoke(cli, ["summary", str(path), "--format", "json"])
    assert (summary.exit_code, json.loads(summary.stdout)["violations"]) == (1, 10)
    assert CANARY not in path.read_text()
