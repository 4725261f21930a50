"""The ``purposeguard`` command line (click and rich, from the ``cli`` extra).

Importing this package needs neither: :func:`main` imports them when it runs, and without them
prints the ``pip install`` to run and exits 2. :func:`verify_log` checks an audit log from Python.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from purposeguard.cli._verify import VerifyResult, verify_log

__all__ = ["INSTALL_HINT", "VerifyResult", "main", "verify_log"]

INSTALL_HINT = "pip install 'purposeguard[cli]'"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``purposeguard`` command; exits with its status code."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(
            "purposeguard: the command line needs click and rich. Install them with:\n"
            f"    {INSTALL_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    from purposeguard.cli._commands import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="purposeguard")
