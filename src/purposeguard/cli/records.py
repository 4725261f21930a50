"""``purposeguard records`` and ``purposeguard purposes``: answers to data-subject requests.

- ``records --subject ID --store PATH``: the records of provision to third parties (and of
  entrustment, succession and joint use) for one subject, for a request to disclose them.
- ``purposes MODULE:CLASS --policy PATH``: the notification of the purposes of use of each
  guarded field of a model (with ``--subject`` and ``--store``, the subject's consents and
  suspensions too).

Exit codes: 0 answered, 2 usage or input error (a damaged store too). Register them on the
``purposeguard`` group with ``cli.add_command(records)`` and ``cli.add_command(purposes)``.

Every value in a table comes from the store, the policy file or the command line, so each goes
through :func:`~purposeguard.cli._render.plain`; JSON is ASCII-escaped.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from purposeguard.cli._render import neutralize, plain

__all__ = ["purposes", "records"]

_FORMAT = click.Choice(["table", "json"])
# What a store with a damaged row raises while its records are read: a malformed date or field
# list, a value of the wrong type, a text column that is not UTF-8.
_DAMAGED = (sqlite3.Error, ValueError, TypeError)


def _fail(message: str) -> NoReturn:
    click.echo(f"purposeguard: {neutralize(message, 1000)}", err=True)
    sys.exit(2)


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def _open_store(path: str) -> Any:
    from purposeguard.exceptions import ConfigurationError
    from purposeguard.stores.sqlite import SQLiteStore

    if not os.path.isfile(path):  # Path.is_file() raises on a name too long
        _fail(f"no such registry store: {path}")
    try:
        return SQLiteStore(path)
    except (ConfigurationError, OSError) as exc:
        _fail(f"cannot open the registry store: {exc}")
    except Exception as exc:  # sqlite3.DatabaseError: not a database, damaged file
        _fail(f"cannot open the registry store {path}: {type(exc).__name__}: {exc}")


@click.command()
@click.option("--subject", required=True, help="The data subject's id, as the registry has it.")
@click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The registry's SQLite file.",
)
@click.option("--format", "fmt", type=_FORMAT, default="table", show_default=True)
def records(subject: str, store_path: str, fmt: str) -> None:
    """The records of provision of one subject's data, oldest first."""
    from purposeguard.exceptions import ConfigurationError
    from purposeguard.registry import Registry

    # Through the registry, so that the command and the API agree on which records exist (those
    # past the retention period are left out before they are purged).
    with Registry(_open_store(store_path), refresh_interval=None) as registry:
        try:
            found = registry.records(subject)
            document = json.loads(registry.export_records(subject)) if fmt == "json" else None
        except ConfigurationError as exc:
            _fail(str(exc))
        except _DAMAGED as exc:
            _fail(f"cannot read the records in {store_path}: {type(exc).__name__}: {exc}")
    if document is not None:
        # The registry's own document, re-encoded ASCII-only: the same data, but no bidi
        # override or C1 control reaches the terminal raw.
        click.echo(json.dumps(document, ensure_ascii=True, indent=2))
        return
    title = f"Records of provision for subject {neutralize(subject, 80)}"
    table = Table(title=Text(title, style="table.title"))
    for column in ("date (UTC)", "recipient", "kind", "data items", "basis", "consent / ground"):
        table.add_column(column, overflow="fold")
    for r in found:
        # str(): a store written by other tools may hold a BLOB where text belongs.
        basis = str(r.basis) + (f" (violation: {r.violation})" if r.violation else "")
        why = r.consent_ref or (f"{r.ground}: {r.justification}" if r.ground else "")
        table.add_row(
            Text(r.ts.strftime("%Y-%m-%d %H:%M:%S")),
            plain(r.recipient, 64),
            plain(r.recipient_kind, 32),
            plain(", ".join(str(f) for f in r.fields), 400),
            plain(basis, 80),
            plain(why, 400),
        )
    console = _console()
    console.print(table)
    console.print(Text(f"{len(found)} record(s)"))


def _import_class(target: str) -> type:
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise click.UsageError(f"give the model as MODULE:CLASS, not {target!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        _fail(f"cannot import {target}: {type(exc).__name__}: {exc}")
    if not isinstance(obj, type):
        _fail(f"{target} is not a class")
    return obj


@click.command()
@click.argument("model")
@click.option(
    "--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False)
)
@click.option("--subject", help="Include this subject's consents and suspensions.")
@click.option(
    "--store", "store_path", type=click.Path(dir_okay=False), help="The registry's SQLite file."
)
@click.option("--format", "fmt", type=_FORMAT, default="table", show_default=True)
def purposes(
    model: str, policy_file: str, subject: str | None, store_path: str | None, fmt: str
) -> None:
    """Which purposes each field of MODEL (module:Class) may be used for."""
    import purposeguard as pg
    from purposeguard.exceptions import ConfigurationError

    if subject is not None and store_path is None:
        raise click.UsageError("--subject needs --store, the registry's SQLite file")
    try:
        pg.configure(policy=pg.load_policy(policy_file))
    except pg.PolicyError as exc:
        _fail(str(exc))
    cls = _import_class(model)
    registry = None
    if store_path is not None:
        registry = pg.Registry(_open_store(store_path), refresh_interval=None)
        pg.configure(registry=registry)
    try:
        notice = pg.purpose_notice(cls, subject=subject)
    except (pg.PolicyError, ConfigurationError) as exc:
        _fail(str(exc))
    except _DAMAGED as exc:
        if registry is None:
            raise
        _fail(f"cannot read the subject in {store_path}: {type(exc).__name__}: {exc}")
    finally:
        if registry is not None:
            pg.configure(registry=None)
            registry.close()
    if fmt == "json":
        click.echo(json.dumps(notice.to_json(), ensure_ascii=True, indent=2))
        return
    title = f"Purposes of use: {notice.model} (policy {notice.policy_id}@{notice.policy_version})"
    table = Table(title=plain(title, 400, style="table.title"))
    for column in ("field", "collected for", "may be used for", "category", "retention"):
        table.add_column(column, overflow="fold")
    for f in notice.fields:
        collected = Text("\n").join(plain(f"{p}: {d}", 400) for p, d in f.descriptions)
        table.add_row(
            plain(f.field),
            collected,
            plain(", ".join(f.usable_for) or "(nothing)", 1000),
            plain((f.category or "") + (" (strict)" if f.strict else "")),
            Text(f"{f.retention.days} days" if f.retention is not None else ""),
        )
    console = _console()
    console.print(table)
    if notice.subject_status is not None:
        for key, values in notice.subject_status.items():
            if values:
                line = f"{key.replace('_', ' ')}: {', '.join(str(v) for v in values)}"
                console.print(plain(line, 1000))
