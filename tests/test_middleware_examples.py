"""The web examples run and block a wrong-purpose use end to end (each in its own process, since
each configures purposeguard, and Django its settings, process-wide)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["fastapi_app.py", "flask_app.py", "django_app/app.py"])
def test_example_blocks_a_wrong_purpose_use(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "403 {" in done.stdout
    assert "purpose_violation" in done.stdout
