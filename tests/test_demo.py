"""The README's first command: `purposeguard demo` runs end to end in a fresh process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_shows_allowed_blocked_monitored_and_a_verified_trace() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "purposeguard._demo"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "-> returned the skill sheet" in out
    assert "-> PurposeViolation: accessor purposeguard._demo:load_skill_sheet" in out or (
        "-> PurposeViolation: accessor __main__:load_skill_sheet" in out
    )
    assert '"reason": "not_allowed", "purpose": "marketing"' in out
    assert '"mode": "monitor", "enforced": false' in out
    assert "chain intact" in out
    assert "Hanako" not in out  # the guarded data itself never shows in the trace
