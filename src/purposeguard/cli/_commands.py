"""The ``purposeguard`` click commands. Imported only once click and rich are known present.

Exit codes everywhere: 0 nothing matched, 1 violations found (or verification failed, or the
policy is invalid, or the decision is a deny), 2 usage or input error.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from purposeguard.cli._query import Filters, Summary, is_violation, parse_time_arg
from purposeguard.cli._read import ReadStats, iter_records
from purposeguard.cli._render import (
    dump_json,
    neutralize,
    print_summary,
    print_tree,
    print_verify,
    quiet_logs,
    violations_table,
)
from purposeguard.cli._verify import verify_log
from purposeguard.cli.records import purposes, records
from purposeguard.sinks.audit import resolve_key

__all__ = ["cli"]

F = TypeVar("F", bound=Callable[..., Any])
_LOGS = click.Path(dir_okay=False, allow_dash=True)
_FORMAT = click.Choice(["table", "json", "jsonl"])


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"purposeguard: {neutralize(message, 1000)}", err=True)
    sys.exit(code)


def _stdout() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def _sources(logs: tuple[str, ...]) -> list[str]:
    if not logs:
        if sys.stdin.isatty():
            raise click.UsageError("give one or more audit log files, or - to read stdin")
        return ["-"]
    # os.path, not Path.is_file(): that raises on a name too long for the file system.
    missing = [p for p in logs if p != "-" and not os.path.isfile(p)]
    if missing:
        _fail(f"no such file: {missing[0]}")
    return list(logs)


def _records(sources: list[str], stats: ReadStats) -> Iterator[dict[str, object]]:
    try:
        yield from iter_records(sources, stats)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        _report_stats(stats)
        _fail(f"cannot read: {exc}")


def _report_stats(stats: ReadStats) -> None:
    for problem in stats.problems():  # they name the files given: neutralized too
        click.echo(f"purposeguard: {neutralize(problem, 1000)}", err=True)


def _filter_options(func: F) -> F:
    """The filters shared by ``violations``, ``summary`` and ``report``."""
    options = [
        click.option("--since", help="ISO 8601 time, or an age such as 30m, 2h, 7d."),
        click.option("--until", help="ISO 8601 time, or an age such as 30m, 2h, 7d."),
        click.option("--purpose", multiple=True, help="Active purpose (and its descendants)."),
        click.option("--field", multiple=True, help="Field id; shell globs allowed."),
        click.option("--accessor", multiple=True, help="Accessor (module:qualname); globs."),
        click.option("--mode", multiple=True, type=click.Choice(["enforce", "monitor"])),
        click.option("--trace-id", multiple=True, help="W3C trace id."),
        click.option("--subject", multiple=True, help="Keyed hash of the data subject."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filters(kwargs: dict[str, Any]) -> Filters:
    try:
        since = parse_time_arg(kwargs["since"]) if kwargs["since"] else None
        until = parse_time_arg(kwargs["until"]) if kwargs["until"] else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    return Filters(
        since=since,
        until=until,
        purposes=kwargs["purpose"],
        fields=kwargs["field"],
        accessors=kwargs["accessor"],
        modes=kwargs["mode"],
        trace_ids=kwargs["trace_id"],
        subjects=kwargs["subject"],
    )


def _matches(
    logs: tuple[str, ...], kwargs: dict[str, Any], stats: ReadStats
) -> Iterator[dict[str, object]]:
    filters = _filters(kwargs)
    for rec in _records(_sources(logs), stats):
        if is_violation(rec) and filters.match(rec):
            yield rec


@contextmanager
def _neutralized_errors() -> Iterator[None]:
    # Click quotes most of the arguments it echoes with repr(), but not all ("Got unexpected
    # extra argument (...)"), and its messages carry ours: one rule for every one of them.
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:
        raise  # its message is the help text
    except click.ClickException as exc:
        text = exc.format_message()
        if neutralize(text, 1000) == text:
            raise
        # The same exit code: click's own are the class defaults (2 for usage, 1 for the rest).
        if isinstance(exc, click.UsageError):
            raise click.UsageError(neutralize(text, 1000), exc.ctx) from exc
        raise click.ClickException(neutralize(text, 1000)) from exc


class _Group(click.Group):
    """The ``purposeguard`` group: purposeguard's own log lines stay out of every command's
    output, and every usage error is neutralized before click prints it."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _neutralized_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with quiet_logs(), _neutralized_errors():
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """purposeguard: read, verify and report purpose-limitation violation traces."""


@cli.group()
def policy() -> None:
    """Work with policy files."""


@policy.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def policy_check(file: str) -> None:
    """Validate a policy FILE and print its purpose tree (exit 1 if invalid)."""
    import purposeguard as pg

    try:
        loaded = pg.load_policy(file)
    except pg.PolicyError as exc:
        _fail(str(exc), 1)
    print_tree(_stdout(), loaded)


@cli.command()
@click.option("--policy", "policy_file", required=True, type=click.Path(exists=True))
@click.option("--purpose", required=True, help="The access purpose to decide on.")
@click.option("--collected-for", multiple=True, help="A purpose the data was collected for.")
@click.option("--prohibited", multiple=True, help="A purpose the data must never be used for.")
@click.option("--format", "fmt", type=_FORMAT, default="table")
def explain(
    policy_file: str,
    purpose: str,
    collected_for: tuple[str, ...],
    prohibited: tuple[str, ...],
    fmt: str,
) -> None:
    """Print the decision for PURPOSE on data with these tags, and why (exit 1 on deny)."""
    import purposeguard as pg

    try:
        loaded = pg.load_policy(policy_file)
    except pg.PolicyError as exc:
        _fail(str(exc), 2)
    args: dict[str, Any] = {
        "collected_for": collected_for,
        "prohibited": prohibited,
        "policy": loaded,
    }
    decision = pg.check(purpose, **args)
    if fmt == "table":
        # One line by construction; a newline in it came from an argument or the policy's id.
        click.echo(neutralize(pg.explain(purpose, **args), 10_000))
    else:
        out = {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "purpose": decision.purpose,
            "policy_version": decision.policy_version,
            "rule": dataclasses.asdict(decision.rule),
        }
        click.echo(dump_json(out))
    sys.exit(0 if decision.allowed else 1)


@cli.command()
@click.argument("logs", nargs=-1, type=_LOGS)
@_filter_options
@click.option("--format", "fmt", type=_FORMAT, help="Default: table on a terminal, else jsonl.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the N latest matches.")
def violations(logs: tuple[str, ...], fmt: str | None, limit: int | None, **kwargs: Any) -> None:
    """List violations in audit logs (or structlog JSON output); - reads stdin."""
    stdout = sys.stdout
    fmt = fmt or ("table" if stdout.isatty() else "jsonl")
    stats = ReadStats()
    matches = _matches(logs, kwargs, stats)
    found = 0
    if fmt == "table" or limit is not None:
        latest: deque[dict[str, object]] = deque(maxlen=limit or 100)
        for rec in matches:
            found += 1
            latest.append(rec)
        if fmt == "table":
            title = f"{found} matching record(s)" + (
                f", the latest {len(latest)} shown" if found > len(latest) else ""
            )
            _stdout().print(violations_table(latest, title))
        else:
            for _ in _write_json(stdout, iter(latest), fmt):
                pass
    else:
        for _ in _write_json(stdout, matches, fmt):
            found += 1
    _report_stats(stats)
    sys.exit(1 if found else 0)


def _write_json(out: Any, records: Iterator[dict[str, object]], fmt: str) -> Iterator[None]:
    # A generator so the caller can count while streaming; json is one array, jsonl one per line.
    first = True
    if fmt == "json":
        out.write("[")
    for rec in records:
        if fmt == "json":
            out.write("\n" if first else ",\n")
        out.write(dump_json(rec) + ("" if fmt == "json" else "\n"))
        first = False
        yield None
    if fmt == "json":
        out.write("\n]\n" if not first else "]\n")


@cli.command()
@click.argument("logs", nargs=-1, type=_LOGS)
@_filter_options
@click.option("--format", "fmt", type=_FORMAT, help="Default: table on a terminal, else json.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
def summary(logs: tuple[str, ...], fmt: str | None, top: int, **kwargs: Any) -> None:
    """Count violations by purpose, field, accessor, code location and over time."""
    stdout = sys.stdout
    fmt = fmt or ("table" if stdout.isatty() else "json")
    stats = ReadStats()
    result = Summary()
    filters = _filters(kwargs)
    for rec in _records(_sources(logs), stats):
        if not is_violation(rec) or filters.match(rec):
            result.add(rec)
    if fmt == "table":
        print_summary(_stdout(), result, top)
    else:
        click.echo(dump_json(result.to_json(top)))
    _report_stats(stats)
    sys.exit(1 if result.total else 0)


@cli.command()
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="File holding the HMAC key (default: $PURPOSEGUARD_AUDIT_KEY).",
)
@click.option("--allow-unsigned", is_flag=True, help="Accept a chain-only check.")
@click.option(
    "--expect-sealed",
    is_flag=True,
    help="Fail unless the log ends with the final checkpoint of a clean close.",
)
@click.option(
    "--from-genesis", is_flag=True, help="Fail unless the chain starts at seq 0 (no file missing)."
)
@click.option("--strict", is_flag=True, help="Fail on a torn tail (crash while writing) too.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def verify(
    logs: tuple[str, ...],
    key_file: str | None,
    allow_unsigned: bool,
    expect_sealed: bool,
    from_genesis: bool,
    strict: bool,
    fmt: str,
) -> None:
    """Check the hash chain, headers and signed checkpoints; name the first bad seq."""
    try:
        key = Path(key_file).read_bytes().rstrip(b"\r\n") if key_file else resolve_key(None)
    except OSError as exc:
        _fail(f"cannot read the key file: {exc}")
    result = verify_log(
        list(logs), key=key, expect_sealed=expect_sealed, expect_genesis=from_genesis
    )
    code = result.exit_code(allow_unsigned=allow_unsigned, strict=strict)
    if fmt == "json":
        fields = dataclasses.asdict(result)
        click.echo(dump_json({"exit_code": code, **fields}))
    else:
        print_verify(sys.stdout, result, code)
    sys.exit(code)


@cli.command()
@click.argument("logs", nargs=-1, type=_LOGS)
@_filter_options
@click.option("--html", "html_file", required=True, type=click.Path(dir_okay=False))
def report(logs: tuple[str, ...], html_file: str, **kwargs: Any) -> None:
    """Write one self-contained HTML report (charts and the latest violations)."""
    from purposeguard.cli._report import render_html

    stats = ReadStats()
    sources = _sources(logs)
    result = Summary().add_all(_matches(logs, kwargs, stats))
    page = render_html(result, sources=sources, skipped=sum(stats.skipped.values()))
    try:
        Path(html_file).write_text(page, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {html_file}: {exc}")
    _report_stats(stats)
    click.echo(f"wrote {neutralize(html_file, 1000)}: {result.total} violation(s)", err=True)
    sys.exit(1 if result.total else 0)


@cli.command()
def demo() -> None:
    """Run a short demonstration of purposeguard in action."""
    # Imported when asked for: the demo defines its own guards only when it runs.
    demo_main = importlib.import_module("purposeguard.cli._demo").main
    raise SystemExit(demo_main())


# Data-subject requests live in their own module (cli/records.py).
cli.add_command(records)
cli.add_command(purposes)
