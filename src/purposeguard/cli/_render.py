"""Terminal output with rich: tables whose cells can never carry escape sequences or markup."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from purposeguard.cli._query import Summary, weight
from purposeguard.cli._verify import VerifyResult

__all__ = [
    "dump_json",
    "neutralize",
    "print_summary",
    "print_tree",
    "print_verify",
    "violations_table",
]

_COLUMNS = ("ts", "mode", "purpose", "field/accessor", "reason", "code", "count")


def neutralize(value: object, limit: int = 200) -> str:
    """A printable, single-line rendering of any value: controls, bidi marks and lone
    surrogates become visible escapes, so a log line cannot drive the terminal."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dump_json(rec: object) -> str:
    """One JSON line, ASCII only, so escape sequences stay escaped when piped to a terminal."""
    return json.dumps(rec, ensure_ascii=True, separators=(",", ":"), default=str)


def _cell(value: object) -> Text:
    # Text(), not str: rich would otherwise interpret "[bold]" in a value as markup.
    return Text(neutralize(value))


def violations_table(records: Iterable[Mapping[str, object]], title: str) -> Table:
    """A table of violation records, one row each."""
    table = Table(title=title, show_lines=False)
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
            *(_cell(rec.get(k)) for k in ("ts", "mode", "purpose")),
            _cell(where),
            _cell(rec.get("reason")),
            _cell(rec.get("code")),
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
        table = Table(title=f"by {title}", title_justify="left")
        table.add_column(title.split(" ")[0], overflow="fold")
        table.add_column("count", justify="right")
        for key, n in counter.most_common(top):
            table.add_row(_cell(key), Text(str(n)))
        console.print(table)
    timeline = summary.timeline()
    if timeline:
        peak = max(n for _, n in timeline) or 1
        table = Table(title="over time", title_justify="left")
        table.add_column("period")
        table.add_column("count", justify="right")
        table.add_column("")
        for label, n in timeline[-48:]:
            table.add_row(label, str(n), "█" * max(0, round(30 * n / peak)))
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
        label = Text(neutralize(name), style="bold")
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
