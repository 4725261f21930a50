"""``purposeguard records`` and ``purposeguard purposes``: answers to data-subject requests.

- ``records --subject ID --store PATH``: the records of provision to third parties (and of
  entrustment, succession and joint use) for one subject, for a request to disclose them.
- ``purposes MODULE:CLASS --policy PATH``: the notification of the purposes of use of each
  guarded field of a model (with ``--subject`` and ``--store``, the subject's consents and
  suspensions too).

Exit codes: 0 answered, 2 usage or input error. Register them on the ``purposeguard`` group with
``cli.add_command(records)`` and ``cli.add_command(purposes)``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from purposeguard.cli._render import neutralize

__all__ = ["purposes", "records"]

_FORMAT = click.Choice(["table", "json"])


def _fail(message: str) -> NoReturn:
    click.echo(f"purposeguard: {neutralize(message, 1000)}", err=True)
    sys.exit(2)


def _console() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


def _open_store(path: str) -> Any:
    from purposeguard.exceptions import ConfigurationError
    from purposeguard.stores.sqlite import SQLiteStore

    if not Path(path).is_file():
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
            document = registry.export_records(subject)
        except ConfigurationError as exc:
            _fail(str(exc))
    if fmt == "json":
        click.echo(document)
        return
    table = Table(title=f"Records of provision for subject {neutralize(subject, 80)}")
    for column in ("date (UTC)", "recipient", "kind", "data items", "basis", "consent / ground"):
        table.add_column(column, overflow="fold")
    for r in found:
        basis = r.basis + (f" (violation: {r.violation})" if r.violation else "")
        why = r.consent_ref or (f"{r.ground}: {r.justification}" if r.ground else "")
        table.add_row(
            r.ts.strftime("%Y-%m-%d %H:%M:%S"),
            neutralize(r.recipient, 64),
            neutralize(r.recipient_kind, 32),
            neutralize(", ".join(r.fields), 400),
            neutralize(basis, 80),
            neutralize(why, 400),
        )
    console = _console()
    console.print(table)
    console.print(f"{len(found)} record(s)")


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
    finally:
        if registry is not None:
            pg.configure(registry=None)
            registry.close()
    if fmt == "json":
        click.echo(json.dumps(notice.to_json(), ensure_ascii=True, indent=2))
        return
    table = Table(
        title=f"Purposes of use: {notice.model} (policy {notice.policy_id}@{notice.policy_version})"
    )
    for column in ("field", "collected for", "may be used for", "category", "retention"):
        table.add_column(column, overflow="fold")
    for f in notice.fields:
        table.add_row(
            f.field,
            "\n".join(f"{p}: {d}" for p, d in f.descriptions),
            ", ".join(f.usable_for) or "(nothing)",
            (f.category or "") + (" (strict)" if f.strict else ""),
            f"{f.retention.days} days" if f.retention is not None else "",
        )
    console = _console()
    console.print(table)
    if notice.subject_status is not None:
        for key, values in notice.subject_status.items():
            if values:
                console.print(f"{key.replace('_', ' ')}: {', '.join(values)}")
