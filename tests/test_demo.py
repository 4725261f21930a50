"""The README's first command: `purposeguard demo` runs end to end in a fresh process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_allowed_blocked_monitored_and_a_verified_trace() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard.cli._demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "-> returned the skill sheet" in out
    assert "-> PurposeViolation: accessor skills:load_skill_sheet" in out
    assert '"reason": "not_allowed", "purpose": "marketing"' in out
    assert '"mode": "monitor", "enforced": false' in out
    assert "chain intact" in out
    assert "Hanako" not in out  # the guarded data itself never shows in the trace


def test_importing_the_demo_defines_no_guard_and_configures_nothing() -> None:
    import structlog

    import purposeguard as pg

    before = structlog.get_config()
    import purposeguard.cli._demo

    assert not any("load_skill_sheet" in g.name for g in pg.testing.guards())
    assert structlog.get_config() == before
    pg.configure(policy=pg.testing.make_policy(["billing"]))  # no guard of the demo vetoes it


def test_the_demo_leaves_logging_as_it_found_it() -> None:
    import structlog

    from purposeguard.cli._demo import main

    before = structlog.get_config()
    assert main() == 0
    assert structlog.get_config() == before
