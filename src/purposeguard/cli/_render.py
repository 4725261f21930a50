"""Terminal output with rich: every value from data is shown through :func:`plain`, so no cell,
title or line can carry an escape sequence or be read as rich markup."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import structlog
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

import purposeguard as pg
from purposeguard.cli._neutralize import neutralize
from purposeguard.cli._query import Summary, weight
from purposeguard.cli._verify import VerifyResult

__all__ = [
    "dump_json",
    "neutralize",
    "plain",
    "print_summary",
    "print_tree",
    "print_verify",
    "quiet_logs",
    "violations_table",
]

_COLUMNS = ("ts", "mode", "purpose", "field/accessor", "reason", "code", "count")


def dump_json(rec: object) -> str:
    """One JSON line, ASCII only, so escape sequences stay escaped when piped to a terminal."""
    return json.dumps(rec, ensure_ascii=True, separators=(",", ":"), default=str)


def plain(value: object, limit: int = 200, style: str = "") -> Text:
    """``value`` neutralized, as rich text that is never parsed as markup.

    A ``str`` given to rich (a cell, a title, ``Console.print``) is markup: ``[/]`` in a value
    raises ``MarkupError`` and ``[link=...]`` becomes a hidden terminal hyperlink. A ``Text``
    is shown as it is.
    """
    return Text(neutralize(value, limit), style=style)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep purposeguard's own log lines (``policy_loaded``, ...) out of a command's output.

    The command is the application here; without this, structlog's default prints them on
    stdout, between a table's rows or before a JSON document. Events still queued are delivered
    (to nowhere) before the previous configuration is put back.
    """
    saved = structlog.get_config()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory(), processors=[])
    try:
        yield
    finally:
        pg.flush()
        structlog.configure(**saved)


def violations_table(records: Iterable[Mapping[str, object]], title: str) -> Table:
    """A table of violation records, one row each."""
    table = Table(title=Text(title, style="table.title"), show_lines=False)
    for col in _COLUMNS:
        table.add_column(
            col,
            justify="right" if col == "count" else "left",
            overflow="fold",
            no_wrap=col in ("ts", "mode", "count"),
        )
    for rec in records:
        where = rec.get("field") if rec.get("field") is not None else rec.get("accessor")
        table.add_row(
            *(plain(rec.get(k)) for k in ("ts", "mode", "purpose")),
            plain(where),
            plain(rec.get("reason")),
            plain(rec.get("code")),
            Text(str(weight(rec))),
        )
    return table


def print_summary(console: Console, summary: Summary, top: int) -> None:
    """Counts by each dimension, largest first, and violations over time."""
    span = (
        f"{summary.first_ts:%Y-%m-%d %H:%M}Z - {summary.last_ts:%Y-%m-%d %H:%M}Z"
        if summary.first_ts and summary.last_ts
        else "no timestamps"
    )
    console.print(Text(f"{summary.total} violation(s) in {summary.records} record(s), {span}"))
    for title, counter in (
        ("purpose", summary.by_purpose),
        ("field", summary.by_field),
        ("accessor", summary.by_accessor),
        ("code location (top offenders)", summary.by_code),
        ("mode", summary.by_mode),
        ("reason", summary.by_reason),
        ("other events", summary.other_events),
    ):
        if not counter:
            continue
        table = Table(title=Text(f"by {title}", style="table.title"), title_justify="left")
        table.add_column(title.split(" ")[0], overflow="fold")
        table.add_column("count", justify="right")
        for key, n in counter.most_common(top):
            table.add_row(plain(key), Text(str(n)))
        console.print(table)
    timeline = summary.timeline()
    if timeline:
        peak = max(n for _, n in timeline) or 1
        table = Table(title=Text("over time", style="table.title"), title_justify="left")
        table.add_column("period")
        table.add_column("count", justify="right")
        table.add_column("")
        for label, n in timeline[-48:]:
            table.add_row(plain(label), Text(str(n)), Text("█" * max(0, round(30 * n / peak))))
        console.print(table)


def print_verify(out: IO[str], result: VerifyResult, code: int) -> None:
    """Plain lines: the verdict first, then where it stopped and what it noticed."""
    verdict = {0: "OK", 1: "FAILED", 2: "NOT VERIFIED"}[code]
    seqs = (
        f"seq {result.first_seq}..{result.last_seq}"
        if result.last_seq is not None
        else "no records"
    )
    print(f"{verdict}: {result.records} record(s) in {len(result.files)} file(s), {seqs}", file=out)
    if result.failure:
        print(f"first bad seq: {result.bad_seq}: {neutralize(result.failure, 500)}", file=out)
    if result.unsigned:
        print(
            f"{result.unsigned} header/checkpoint(s) are unsigned: the chain cannot be "
            "authenticated (pass --allow-unsigned to accept a chain-only check)",
            file=out,
        )
    if result.unchecked_signatures:
        print(
            f"{result.unchecked_signatures} signature(s) not checked: no key. Set "
            "PURPOSEGUARD_AUDIT_KEY or pass --key-file (or --allow-unsigned for the chain only)",
            file=out,
        )
    for tail in result.torn_tails:
        print(f"torn tail (crash while writing?): {neutralize(tail, 500)}", file=out)
    for warning in result.warnings:
        print(f"note: {neutralize(warning, 500)}", file=out)
    if result.last_hash and result.failure is None:
        print(f"last hash: {result.last_hash} (sealed: {result.sealed})", file=out)


def print_tree(console: Console, policy: object) -> None:
    """The policy's purposes as a tree (dots are the hierarchy)."""
    purposes = getattr(policy, "purposes", {})
    pid = neutralize(getattr(policy, "id", "?"))
    version = neutralize(getattr(policy, "version", "?"))
    mode = neutralize(getattr(policy, "mode", "?"))
    root = Tree(Text(f"{pid} (version {version}, mode {mode})"))
    nodes: dict[str, Tree] = {}
    for name in sorted(purposes):
        spec = purposes[name]
        parent = nodes.get(name.rpartition(".")[0], root)
        label = plain(name, style="bold")
        description = getattr(spec, "description", None)
        if description:
            label.append(f" - {neutralize(description)}")
        if getattr(spec, "mode", None):
            label.append(f" [mode {neutralize(spec.mode)}]")
        compatible = getattr(spec, "compatible_with", ())
        if compatible:
            label.append(f" (compatible with {', '.join(neutralize(c) for c in compatible)})")
        nodes[name] = parent.add(label)
    console.print(root)
