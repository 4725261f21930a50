"""Hostile data reaches no terminal: every command, every input it reads.

Markup, OSC 8 hyperlinks, ANSI CSI, ``\\r`` overwrites, bidi overrides and 1 MB values are
planted in an audit log's fields, a provision record's fields, a policy file's id, version and
descriptions, and the command line. Each command must exit as documented, without a traceback,
print none of the raw bytes, and still show the value in its neutralized form; JSON keeps the
exact data. Commands run through click's runner and, on a pseudo-terminal, as real processes.
"""

from __future__ import annotations

import html
import json
import os
import pty
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from purposeguard.cli._commands import cli
from purposeguard.cli._neutralize import neutralize
from purposeguard.sinks.audit import AUDIT_KEY_ENV, AuditLog, canonical_json
from purposeguard.stores import ProvisionRecord
from purposeguard.stores.sqlite import SQLiteStore

KEY = b"neutralize-test-key-0123"


@dataclass(frozen=True)
class Case:
    """A hostile value and the text a reader must still see of it."""

    name: str
    value: str
    shown: str


CASES = [
    Case(
        "markup",
        "[/]x[bold]b[/bold][link=https://evil.example/]click[/link]",
        "[/]x[bold]b[/bold][link=https://evil.example/]click[/link]",
    ),
    Case(
        "osc8-hyperlink",
        "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
        r"\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
    ),
    Case("ansi-csi", "\x1b[31mred\x1b[0m\x1b[2J", r"\x1b[31mred\x1b[0m\x1b[2J"),
    # NUL last: a command line cannot carry it, so arguments drop it and keep the rest.
    Case("overwrite", "approved\rDENIED\b\b\x00", r"approved\rDENIED\x08\x08"),
    Case("bidi", "invoice\u202efdp.exe\u2066x\u2069", r"invoice\u202efdp.exe\u2066x\u2069"),
    Case("1MB", "[/]" + "x" * 1_000_000, "[/]" + "x" * 40),
]
# Never in any output: rich's own styles are SGR sequences (on a terminal), nothing else is.
RAW = ("\x1b]", "\x1b[31mred", "\x1b[2J", "\x07", "\x08", "\x00", "\u202e", "\u2066", "\u2069")
SGR = re.compile(r"\x1b\[[0-9;]*m")
WIDE = {"COLUMNS": "4000"}  # no table wraps a value, so the neutralized form is one substring
FIELDS = ("ts", "mode", "purpose", "field", "accessor", "reason", "code", "trace_id", "subject")


def assert_clean(out: str) -> None:
    """No raw escape, control or bidi character; everything else printable."""
    for raw in RAW:
        assert raw not in out, f"{raw!r} reached the output"
    rest = SGR.sub("", out.replace("\r\n", "\n"))
    assert "Traceback" not in rest
    bad = sorted({c for c in rest if not c.isprintable() and c != "\n"})
    assert bad == []


def json_strings(obj: object) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from json_strings(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from json_strings(item)


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    dir: Path
    value: str
    log: Path
    tampered: Path
    store: Path
    policy: Path
    bad_policy: Path


def _violation(**kw: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "event": "purposeguard.violation",
        "ts": "2024-09-01T10:00:00Z",
        "mode": "enforce",
        "purpose": "marketing",
        "field": "hr.Applicant.email",
        "reason": "not_allowed",
        "code": "hr/views.py:1",
    }
    rec.update(kw)
    return rec


def build_inputs(directory: Path, value: str) -> Inputs:
    """An audit log, a tampered copy, a registry store and policy files, all carrying ``value``."""
    log = directory / "violations.jsonl"
    audit = AuditLog(log, key=KEY, checkpoint_every=5)
    if len(value) < 10_000:
        audit.emit(_violation(**dict.fromkeys(FIELDS, value)))
    else:  # one field each: a line over 1 MiB would be skipped unread
        for name in FIELDS:
            audit.emit(_violation(**{name: value}))
    audit.emit({"event": value[:10_000]})
    audit.close()

    # A header signed with another key id: verify names it in its message.
    lines = log.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["kid"] = value
    tampered = directory / "tampered.jsonl"
    tampered.write_bytes(canonical_json(header) + b"\n" + b"".join(lines[1:]))

    store_path = directory / "registry.db"
    store = SQLiteStore(store_path)
    now = datetime.now(UTC)
    store.add_provision(
        ProvisionRecord(
            "prov-1",
            now,
            value,
            value,
            "s-1",
            (value, "name"),
            "legal_ground",
            ground=value,
            justification=value,
            purpose=value,
            violation=value,
        )
    )
    store.add_provision(
        ProvisionRecord(
            "prov-2", now, value, "third_party", "s-1", ("name",), "consent", consent_ref=value
        )
    )
    store.grant("s-1", "purpose", value, now)
    store.suspend("s-1", "use", value, now)
    store.close()

    policy = directory / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "policy": value[:128],
                "version": value[:128],
                "mode": "enforce",
                "purposes": {"a": {"description": value}, "b": {"description": value}},
            }
        )
    )
    bad_policy = directory / "bad.json"
    bad_policy.write_text(
        json.dumps(
            {
                "policy": "p",
                "version": "1",
                "mode": "enforce",
                "purposes": {value: {"description": "x"}},
            }
        )
    )
    return Inputs(directory, value, log, tampered, store_path, policy, bad_policy)


@pytest.fixture(scope="module", params=CASES, ids=[c.name for c in CASES])
def case_inputs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Case, Inputs]:
    case: Case = request.param
    return case, build_inputs(tmp_path_factory.mktemp(case.name), case.value)


MODEL = """
from typing import Annotated
import purposeguard as pg

class Person(pg.GuardedModel):
    name: Annotated[str, pg.CollectedFor("a")]
"""


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: None) -> Iterator[str]:
    """MODULE:CLASS of a guarded model whose field was collected for purpose ``a``."""
    name = f"hostile_model_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:Person"
    sys.modules.pop(name, None)


# --- data in files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One command: its arguments (from the inputs, and a model's MODULE:CLASS or the hostile
    argument), its documented exit code, and where the value must be seen neutralized
    (``stdout``, ``stderr``, ``html``) or carried exactly (``json``, ``jsonl``: ``exact`` of it).
    """

    name: str
    args: Callable[[Inputs, str], list[str]]
    exit: int
    shows: str | None
    exact: Callable[[str], str] = lambda v: v


def _html_out(i: Inputs, m: str) -> list[str]:
    return ["report", str(i.log), "--html", str(i.dir / f"report-{uuid.uuid4().hex}.html")]


FROM_FILES = [
    Run("violations-table", lambda i, m: ["violations", str(i.log), "--format", "table"], 1, "stdout"),
    Run("violations-json", lambda i, m: ["violations", str(i.log), "--format", "json"], 1, "json"),
    Run("violations-jsonl", lambda i, m: ["violations", str(i.log), "--format", "jsonl"], 1, "jsonl"),
    Run("summary-table", lambda i, m: ["summary", str(i.log), "--format", "table"], 1, "stdout"),
    Run("summary-json", lambda i, m: ["summary", str(i.log), "--format", "json"], 1, "json"),
    Run("report-html", _html_out, 1, "html"),
    Run("verify-intact", lambda i, m: ["verify", str(i.log), "--from-genesis"], 0, None),
    Run("verify-tampered", lambda i, m: ["verify", str(i.tampered)], 1, "stdout"),
    Run("verify-tampered-json", lambda i, m: ["verify", str(i.tampered), "--format", "json"], 1,
        "json", lambda v: repr(v)[1:-1]),
    Run("records-table", lambda i, m: ["records", "--subject", "s-1", "--store", str(i.store)], 0,
        "stdout"),
    Run("records-json", lambda i, m: ["records", "--subject", "s-1", "--store", str(i.store),
                                      "--format", "json"], 0, "json"),
    Run("policy-check", lambda i, m: ["policy", "check", str(i.policy)], 0, "stdout"),
    Run("policy-check-invalid", lambda i, m: ["policy", "check", str(i.bad_policy)], 1, "stderr"),
    Run("explain", lambda i, m: ["explain", "--policy", str(i.policy), "--purpose", "a",
                                 "--collected-for", "a"], 0, "stdout"),
    Run("explain-json", lambda i, m: ["explain", "--policy", str(i.policy), "--purpose", "a",
                                      "--collected-for", "a", "--format", "json"], 0, "json",
        lambda v: v[:128]),
    Run("purposes-table", lambda i, m: ["purposes", m, "--policy", str(i.policy), "--subject",
                                        "s-1", "--store", str(i.store)], 0, "stdout"),
    Run("purposes-json", lambda i, m: ["purposes", m, "--policy", str(i.policy), "--subject",
                                       "s-1", "--store", str(i.store), "--format", "json"], 0,
        "json"),
]  # fmt: skip


def _check(run: Run, case: Case, code: int, stdout: str, stderr: str, page: str | None) -> None:
    assert code == run.exit, (run.name, stdout[-2000:], stderr[-2000:])
    assert_clean(stdout)
    assert_clean(stderr)
    if run.shows == "stdout":
        assert case.shown in stdout
    elif run.shows == "stderr":
        assert case.shown in stderr
    elif run.shows == "html":
        assert page is not None
        assert_clean(page)
        assert html.escape(case.shown) in page
    elif run.shows in ("json", "jsonl"):
        docs = (
            [json.loads(line) for line in stdout.splitlines()]
            if run.shows == "jsonl"
            else [json.loads(stdout)]
        )
        exact = run.exact(case.value)
        assert any(exact in s for doc in docs for s in json_strings(doc))


@pytest.mark.parametrize("run", FROM_FILES, ids=[r.name for r in FROM_FILES])
def test_data_from_files_is_shown_neutralized(
    run: Run, case_inputs: tuple[Case, Inputs], model: str
) -> None:
    case, inputs = case_inputs
    args = run.args(inputs, model)
    result = CliRunner().invoke(cli, args, env={AUDIT_KEY_ENV: KEY.decode(), **WIDE})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    page = Path(args[-1]).read_text(encoding="utf-8") if run.shows == "html" else None
    _check(run, case, result.exit_code, result.stdout, result.stderr, page)


# --- data on the command line ---------------------------------------------------------------

FROM_ARGUMENTS = [
    Run("missing-log", lambda i, a: ["violations", f"{i.dir}/missing-{a}"], 2, "stderr"),
    Run("extra-argument", lambda i, a: ["policy", "check", str(i.policy), a], 2, "stderr"),
    Run("bad-since", lambda i, a: ["violations", str(i.log), "--since", a], 2, "stderr"),
    Run("unknown-command", lambda i, a: [a], 2, "stderr"),
    Run("explain-tags", lambda i, a: ["explain", "--policy", str(i.policy), "--purpose", "a",
                                      "--collected-for", a, "--prohibited", a], 1, "stdout"),
    Run("report-unwritable", lambda i, a: ["report", str(i.log), "--html",
                                           f"{i.dir}/no-such-dir/{a}"], 2, "stderr"),
    Run("purposes-model", lambda i, a: ["purposes", a, "--policy", str(i.policy)], 2, "stderr"),
    Run("records-store", lambda i, a: ["records", "--subject", "s", "--store", a], 2, "stderr"),
]  # fmt: skip


@pytest.mark.parametrize("run", FROM_ARGUMENTS, ids=[r.name for r in FROM_ARGUMENTS])
def test_arguments_echoed_in_messages_are_neutralized(
    run: Run, case_inputs: tuple[Case, Inputs]
) -> None:
    case, inputs = case_inputs
    arg = case.value.replace("\x00", "")  # an argv string cannot hold NUL
    result = CliRunner().invoke(cli, run.args(inputs, arg), env=WIDE)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    _check(run, case, result.exit_code, result.stdout, result.stderr, None)


def test_a_subject_id_from_the_command_line_is_neutralized_in_the_title(
    case_inputs: tuple[Case, Inputs],
) -> None:
    case, inputs = case_inputs
    result = CliRunner().invoke(
        cli, ["records", "--subject", case.value, "--store", str(inputs.store)], env=WIDE
    )
    assert_clean(result.stdout + result.stderr)
    if len(case.value) <= 256:
        assert (result.exit_code, case.shown in result.stdout) == (0, True)
        assert "0 record(s)" in result.stdout
    else:  # not a subject id: an input error that does not echo it
        assert (result.exit_code, result.stdout) == (2, "")


def test_a_damaged_store_is_an_input_error(tmp_path: Path) -> None:
    import sqlite3

    inputs = build_inputs(tmp_path, "x")
    with sqlite3.connect(inputs.store) as db:
        db.execute("UPDATE provisions SET fields = '[not json' WHERE id = 'prov-1'")
    db.close()
    result = CliRunner().invoke(cli, ["records", "--subject", "s-1", "--store", str(inputs.store)])
    assert result.exit_code == 2
    assert "cannot read the records" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_file_name_too_long_for_the_file_system_is_missing_not_a_crash(tmp_path: Path) -> None:
    name = str(tmp_path / ("x" * 300))
    for args in (["violations", name], ["records", "--subject", "s", "--store", name]):
        result = CliRunner().invoke(cli, args)
        assert (args[0], result.exit_code) == (args[0], 2)
        assert "no such" in result.stderr


def test_the_library_logs_nothing_into_a_commands_output(tmp_path: Path) -> None:
    # A real process: there, structlog's default prints purposeguard's events on stdout.
    inputs = build_inputs(tmp_path, "plain")
    (tmp_path / "quiet_model.py").write_text(MODEL)
    args = ["purposes", "quiet_model:Person", "--policy", str(inputs.policy), "--format", "json"]
    proc = subprocess.run(
        [sys.executable, "-m", "purposeguard.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["policy_id"] == "plain"  # the document and nothing else
    assert "policy_loaded" not in proc.stdout + proc.stderr


# --- properties -----------------------------------------------------------------------------

_HOSTILE_PIECES = st.sampled_from(
    ["\x1b", "\x1b]8;;", "\x07", "\x1b\\", "\x9b", "\r", "\b", "\x00", "\n", "\t", "\u202e",
     "\u2066", "\u2028", "\x85", "\ufeff", "[", "]", "[/]", "[bold]", "[link=", "<", "&", "'"]
)  # fmt: skip
hostile_text = st.lists(
    st.one_of(_HOSTILE_PIECES, st.text(st.characters(exclude_categories=()), max_size=8)),
    max_size=12,
).map("".join)


@given(text=hostile_text, limit=st.integers(min_value=1, max_value=300))
def test_neutralize_is_printable_bounded_and_keeps_printable_text(text: str, limit: int) -> None:
    out = neutralize(text, limit)
    assert out.isprintable()
    assert len(out) <= 10 * limit  # \U0010ffff is the longest escape
    if text.isprintable() and len(text) <= limit:
        assert out == text
    kept = text if len(text) <= limit else text[: limit - 1]
    assert out == "".join(c if c.isprintable() else repr(c)[1:-1] for c in kept) + (
        "" if len(text) <= limit else "…"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text.filter(lambda s: s.strip()))
def test_any_text_in_a_log_reaches_tables_and_html_only_neutralized(value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        log.write_text(json.dumps(_violation(purpose=value, code=value)) + "\n")
        runner = CliRunner()
        for fmt in ("table", "jsonl"):
            result = runner.invoke(cli, ["violations", str(log), "--format", fmt], env=WIDE)
            assert result.exit_code == 1, result.output
            assert_clean(result.stdout)
            if fmt == "table":
                assert neutralize(value).strip() in result.stdout
            else:
                assert json.loads(result.stdout)["purpose"] == value
        summary = runner.invoke(cli, ["summary", str(log), "--format", "table"], env=WIDE)
        assert summary.exit_code == 1
        assert_clean(summary.stdout)
        assert neutralize(value).strip() in summary.stdout
        page = Path(tmp) / "r.html"
        assert runner.invoke(cli, ["report", str(log), "--html", str(page)]).exit_code == 1
        text = page.read_text(encoding="utf-8")
        assert_clean(text)
        assert html.escape(neutralize(value, 500), quote=True) in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=hostile_text.filter(lambda s: s.strip()))
def test_any_justification_reaches_the_records_table_only_neutralized(value: str) -> None:
    value = value.encode("utf-8", "replace").decode("utf-8")  # SQLite text is UTF-8
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "r.db"
        store = SQLiteStore(store_path)
        record = ProvisionRecord(
            "p", datetime.now(UTC), "tax_office", "third_party", "s", ("name",), "legal_ground",
            ground="statute", justification=value,
        )  # fmt: skip
        store.add_provision(record)
        store.close()
        args = ["records", "--subject", "s", "--store", str(store_path)]
        table = CliRunner().invoke(cli, args, env=WIDE)
        assert table.exit_code == 0, table.output
        assert_clean(table.stdout)
        as_json = CliRunner().invoke(cli, [*args, "--format", "json"])
        assert json.loads(as_json.stdout)["records"][0]["justification"] == value
        assert_clean(as_json.stdout)


# --- a real terminal ------------------------------------------------------------------------

ALL = "".join(c.value for c in CASES[:-1])  # the short ones, the hyperlink first


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the command with stdout and stderr on a pseudo-terminal, as rich sees a user's."""
    primary, secondary = pty.openpty()
    env = {AUDIT_KEY_ENV: KEY.decode(), "PATH": "/usr/bin:/bin", "COLUMNS": "1000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "purposeguard.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=cwd,
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
    return proc.wait(timeout=60), out.decode("utf-8")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_real_terminal_nothing_hostile_is_obeyed(tmp_path: Path) -> None:
    inputs = build_inputs(tmp_path, ALL)
    (tmp_path / "terminal_model.py").write_text(MODEL)
    store = ["--store", str(inputs.store)]
    runs = [
        (["violations", str(inputs.log)], 1),  # a table: stdout is a terminal
        (["summary", str(inputs.log)], 1),
        (["verify", str(inputs.tampered)], 1),
        (["records", "--subject", "s-1", *store], 0),
        (["purposes", "terminal_model:Person", "--policy", str(inputs.policy), "--subject", "s-1",
          *store], 0),
        (["policy", "check", str(inputs.policy)], 0),
        (["explain", "--policy", str(inputs.policy), "--purpose", "a", "--collected-for", "a"], 0),
        (["policy", "check", str(inputs.policy), ALL.replace("\x00", "")], 2),
    ]  # fmt: skip
    for args, expected in runs:
        code, out = _on_a_terminal(args, tmp_path)
        assert (args[0], code) == (args[0], expected), out
        assert_clean(out)
        assert r"\x1b]8;;https://evil.example/" in out, (args, out)
