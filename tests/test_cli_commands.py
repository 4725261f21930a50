"""The purposeguard command line, through click's runner and one real subprocess."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from purposeguard.cli import INSTALL_HINT, main
from purposeguard.cli._commands import cli
from purposeguard.sinks.audit import AUDIT_KEY_ENV, AuditLog

KEY = b"cli-test-key-0123456789"
POLICY = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"
EVIL = "\x1b[31mred\x1b]0;title\x07[bold]x[/bold]\u202e"


def _violation(i: int, **kw: object) -> dict[str, object]:
    return {
        "event": "purposeguard.violation",
        "schema": "purposeguard.violation/1",
        "ts": f"2024-09-01T{i % 24:02d}:00:00Z",
        "decision": "deny",
        "mode": "monitor" if i % 2 else "enforce",
        "reason": "not_allowed",
        "purpose": "marketing" if i % 3 else "recruitment.selection",
        "field": "hr.models.Applicant.email",
        "code": f"hr/views.py:{i % 4}",
        "trace_id": f"{i:032x}",
        **kw,
    }


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "violations.jsonl"
    log = AuditLog(path, key=KEY, checkpoint_every=5)
    for i in range(12):
        log.emit(_violation(i))
    summary = {"event": "purposeguard.violation_summary", "count": 100, "purpose": "marketing"}
    log.emit(_violation(12, **summary, field=EVIL))
    log.emit({"event": "purposeguard.mode_change", "mode": "monitor"})
    log.close()
    return path


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv(AUDIT_KEY_ENV, KEY.decode())
    return CliRunner()


def test_violations_are_json_lines_when_piped(runner: CliRunner, log_file: Path) -> None:
    result = runner.invoke(cli, ["violations", str(log_file)])
    assert result.exit_code == 1
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(recs) == 13
    assert all(r["event"].startswith("purposeguard.violation") for r in recs)


def test_violations_filters(runner: CliRunner, log_file: Path) -> None:
    def count(*args: str) -> int:
        result = runner.invoke(cli, ["violations", str(log_file), "--format", "jsonl", *args])
        assert result.exit_code == (1 if result.stdout else 0), result.output
        return len(result.stdout.splitlines())

    assert count("--purpose", "recruitment") == 4
    assert count("--purpose", "marketing", "--mode", "monitor") == 4
    assert count("--trace-id", f"{3:032x}") == 1
    assert count("--since", "2024-09-01T05:00Z", "--until", "2024-09-01T07:00Z") == 3
    assert count("--field", "*Applicant*") == 12
    assert count("--accessor", "*") == 0
    assert count("--subject", "nobody") == 0


def test_table_output_neutralizes_escape_sequences_and_markup(
    runner: CliRunner, log_file: Path
) -> None:
    result = runner.invoke(cli, ["violations", str(log_file), "--format", "table"])
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "\\x1b" in result.stdout
    assert "[bold]x" in result.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_json_format_is_one_array_and_limit_keeps_the_latest(
    runner: CliRunner, log_file: Path
) -> None:
    result = runner.invoke(cli, ["violations", str(log_file), "--format", "json", "--limit", "2"])
    recs = json.loads(result.stdout)
    assert [r["event"] for r in recs] == [
        "purposeguard.violation",
        "purposeguard.violation_summary",
    ]
    empty = runner.invoke(cli, ["violations", str(log_file), "--format", "json", "--mode", "x"])
    assert empty.exit_code == 2  # not a valid mode
    none = runner.invoke(cli, ["violations", str(log_file), "--format", "json", "--subject", "s"])
    assert (none.exit_code, json.loads(none.stdout)) == (0, [])


def test_stdin_and_damaged_lines_are_reported_on_stderr(runner: CliRunner, log_file: Path) -> None:
    data = log_file.read_bytes() + b"\xff\xfe\nnot json\n" + b'{"event": "purposeguard.vio'
    result = runner.invoke(cli, ["violations", "-"], input=data)
    assert result.exit_code == 1
    assert "invalid UTF-8" in result.stderr
    assert "not JSON" in result.stderr
    assert "torn" in result.stderr


def test_summary_counts_storm_summaries(runner: CliRunner, log_file: Path) -> None:
    result = runner.invoke(cli, ["summary", str(log_file), "--format", "json"])
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["violations"] == 112
    assert out["by_purpose"]["marketing"] == 108
    assert out["other_events"]["purposeguard.mode_change"] == 1
    table = runner.invoke(cli, ["summary", str(log_file), "--format", "table"])
    assert "112 violation(s)" in table.stdout
    assert "\x1b" not in table.stdout


def test_summary_of_a_log_without_violations_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text('{"event": "purposeguard.policy_reload"}\n')
    assert runner.invoke(cli, ["summary", str(path)]).exit_code == 0


def test_verify(runner: CliRunner, log_file: Path, tmp_path: Path) -> None:
    ok = runner.invoke(cli, ["verify", str(log_file), "--expect-sealed", "--from-genesis"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("OK:")

    lines = log_file.read_bytes().splitlines(keepends=True)
    del lines[4]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines))
    failed = runner.invoke(cli, ["verify", str(bad)])
    assert failed.exit_code == 1
    assert "first bad seq: 5" in failed.stdout

    as_json = runner.invoke(cli, ["verify", str(bad), "--format", "json"])
    assert json.loads(as_json.stdout)["bad_seq"] == 5


def test_verify_keys(runner: CliRunner, log_file: Path, tmp_path: Path) -> None:
    env = {AUDIT_KEY_ENV: ""}
    assert runner.invoke(cli, ["verify", str(log_file)], env=env).exit_code == 2
    assert runner.invoke(cli, ["verify", str(log_file), "--allow-unsigned"], env=env).exit_code == 0
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    args = ["verify", str(log_file), "--key-file", str(key_file)]
    assert runner.invoke(cli, args, env=env).exit_code == 0
    key_file.write_bytes(b"wrong")
    assert runner.invoke(cli, args, env=env).exit_code == 1


def test_input_errors_exit_2(runner: CliRunner, tmp_path: Path, log_file: Path) -> None:
    missing = str(tmp_path / "missing.jsonl")
    assert runner.invoke(cli, ["violations", missing]).exit_code == 2
    assert runner.invoke(cli, ["verify", missing]).exit_code == 2
    assert runner.invoke(cli, ["violations", str(log_file), "--since", "soon"]).exit_code == 2
    bad_gz = tmp_path / "bad.jsonl.gz"
    bad_gz.write_bytes(b"not gzip")
    result = runner.invoke(cli, ["violations", str(bad_gz)])
    assert result.exit_code == 2
    assert "cannot read" in result.stderr
    assert runner.invoke(cli, ["records"]).exit_code == 2


def test_report_writes_escaped_html(runner: CliRunner, log_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["report", str(log_file), "--html", str(out)])
    assert result.exit_code == 1
    page = out.read_text()
    assert "\x1b" not in page
    assert "[bold]x[/bold]" in page
    assert "<script" not in page


def test_policy_check_and_explain(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["policy", "check", str(POLICY)])
    assert result.exit_code == 0, result.output
    assert "recruitment.selection" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'policy: x\nversion: "1"\nmode: enforce\npurposes:\n  a.b:\n    description: x\n'
    )
    result = runner.invoke(cli, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml" in result.stderr

    args = ["explain", "--policy", str(POLICY), "--collected-for", "recruitment"]
    deny = runner.invoke(cli, [*args, "--purpose", "marketing"])
    assert (deny.exit_code, deny.stdout.startswith("DENY")) == (1, True)
    allow = runner.invoke(cli, [*args, "--purpose", "recruitment.selection", "--format", "json"])
    assert allow.exit_code == 0
    assert json.loads(allow.stdout)["allowed"] is True


def test_demo_runs_the_demo_module(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("purposeguard.cli._demo")
    fake.main = lambda: 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "purposeguard.cli._demo", fake)
    assert runner.invoke(cli, ["demo"]).exit_code == 0


def test_without_click_main_prints_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "click", None)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 2
    assert INSTALL_HINT in capsys.readouterr().err
    assert INSTALL_HINT == "pip install 'purposeguard[cli]'"


def test_a_real_subprocess(log_file: Path) -> None:
    env = {AUDIT_KEY_ENV: KEY.decode(), "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "purposeguard.cli"]
    listed = subprocess.run(
        [*run, "violations", str(log_file), "--purpose", "recruitment"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listed.returncode == 1, listed.stderr
    assert len(listed.stdout.splitlines()) == 4
    verified = subprocess.run(
        [*run, "verify", str(log_file)], capture_output=True, text=True, env=env, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _run_on_a_terminal(args: list[str]) -> tuple[int, bytes]:
    primary, secondary = pty.openpty()
    env = {AUDIT_KEY_ENV: KEY.decode(), "PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "purposeguard.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(primary)
    return proc.wait(timeout=60), out


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_table_on_a_terminal_with_escapes_neutralized(log_file: Path) -> None:
    code, out = _run_on_a_terminal(["violations", str(log_file)])
    assert code == 1
    assert b"13 matching record(s)" in out  # the table's title, not JSON lines
    assert b'{"' not in out
    assert b"\\x1b[31m" in out  # the log's escape shown, not obeyed
    for raw in (b"\x1b[31mred", b"\x1b]0;", b"\x07", "\u202e".encode()):
        assert raw not in out


def test_records_leaves_out_what_the_api_leaves_out_past_retention(
    runner: CliRunner, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    import purposeguard as pg
    from purposeguard.cli.records import records
    from purposeguard.stores import ProvisionRecord
    from purposeguard.stores.sqlite import SQLiteStore

    store_path = tmp_path / "registry.db"
    store = SQLiteStore(store_path)
    now = datetime.now(UTC)
    for n, age in enumerate((timedelta(days=10), timedelta(days=4 * 365))):
        record = ProvisionRecord(
            f"prov-{n}", now - age, "tax_office", "third_party", "s", ("name",), "consent"
        )
        store.add_provision(record)
    store.close()
    out = runner.invoke(records, ["--subject", "s", "--store", str(store_path), "--format", "json"])
    assert out.exit_code == 0, out.output
    with pg.Registry(store_path, refresh_interval=None) as registry:
        expected = [r.id for r in registry.records("s")]
    assert [r["id"] for r in json.loads(out.output)["records"]] == expected == ["prov-0"]
