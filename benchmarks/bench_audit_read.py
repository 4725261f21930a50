"""Lines per second for reading audit logs: ``violations`` filtering, ``summary`` and ``verify``.

Generates a 1,000,000-line signed log in a temporary directory (``--quick``: 100,000 lines) with
the real writer, then times each reader over it in this process.

    python benchmarks/bench_audit_read.py [--quick]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from click.testing import CliRunner

from purposeguard.cli._commands import cli
from purposeguard.cli._query import Filters, Summary, is_violation
from purposeguard.cli._read import ReadStats, iter_records
from purposeguard.cli._verify import verify_log
from purposeguard.sinks.audit import AuditLog

KEY = b"benchmark-key-0123456789"
PURPOSES = ("marketing", "recruitment.selection", "audit", "inquiry")


def generate(directory: Path, lines: int) -> list[str]:
    """Write ``lines`` violation records through the real writer; returns the log's files."""
    path = directory / "violations.jsonl"
    log = AuditLog(path, key=KEY, buffer_size=50_000, max_bytes=256 * 1024 * 1024)
    for i in range(lines):
        log.emit(
            {
                "event": "purposeguard.violation",
                "schema": "purposeguard.violation/1",
                "ts": f"2024-09-{1 + (i // 86_400) % 28:02d}T{(i // 3600) % 24:02d}:"
                f"{(i // 60) % 60:02d}:{i % 60:02d}Z",
                "decision": "deny",
                "mode": "monitor",
                "enforced": False,
                "reason": "not_allowed",
                "purpose": PURPOSES[i % 4],
                "allowed": ["recruitment"],
                "prohibited": [],
                "field": f"hr.models.Applicant.f{i % 50}",
                "channel": "attribute",
                "policy_id": "alj-privacy",
                "policy_version": "2024-09-01",
                "subject": None,
                "trace_id": f"{i:032x}",
                "span_id": f"{i:016x}",
                "service": "hr",
                "code": f"hr/views.py:{i % 200}",
            }
        )
    log.close()
    return sorted(glob.glob(str(path) + "*"))


def _timed(label: str, lines: int, func: object) -> tuple[str, float, float]:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    return label, elapsed, lines / elapsed


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; always exits 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 lines instead of 1,000,000")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = generate(Path(tmp), n)
        write_s = time.perf_counter() - t0
        total = sum(1 for name in files for _ in open(name, "rb"))  # noqa: SIM115
        size = sum(os.path.getsize(f) for f in files)
        filters = Filters(purposes=("recruitment",), modes=("monitor",))

        def filter_only() -> None:
            stats = ReadStats()
            sum(1 for r in iter_records(files, stats) if is_violation(r) and filters.match(r))

        def cli_violations() -> None:
            result = CliRunner().invoke(
                cli, ["violations", *files, "--purpose", "recruitment", "--format", "jsonl"]
            )
            assert result.exit_code == 1, result.output[-500:]

        def summary() -> None:
            Summary().add_all(iter_records(files, ReadStats()))

        def verify() -> None:
            result = verify_log(files, key=KEY, expect_sealed=True, expect_genesis=True)
            assert result.failure is None, result.failure

        rows = [
            _timed("violations filter (engine)", total, filter_only),
            _timed("violations --purpose (CLI, jsonl out)", total, cli_violations),
            _timed("summary", total, summary),
            _timed("verify (chain + HMAC)", total, verify),
        ]
    out = io.StringIO()
    with redirect_stdout(out):
        print(f"log: {total:,} lines, {size / 1e6:.0f} MB, {len(files)} file(s)")
        print(f"written by AuditLog in {write_s:.1f} s ({total / write_s:,.0f} lines/s)")
        print(f"{'reader':40} {'seconds':>9} {'lines/s':>12}")
        for label, seconds, rate in rows:
            print(f"{label:40} {seconds:9.2f} {rate:12,.0f}")
    sys.stdout.write(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
