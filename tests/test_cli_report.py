"""The HTML report: self-contained, escaped, and rendered by a real headless browser offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from purposeguard.cli._commands import cli
from purposeguard.cli._query import Summary
from purposeguard.cli._report import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)
CHARTS = ("chart-time", "chart-purpose", "chart-field", "chart-accessor", "chart-code")


def _records() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(60):
        out.append(
            {
                "event": "purposeguard.violation",
                "ts": f"2024-09-{1 + i // 24:02d}T{i % 24:02d}:15:00Z",
                "mode": "monitor",
                "purpose": ["marketing", "recruitment.selection", "audit"][i % 3],
                "field": "hr.models.Applicant.email" if i % 2 else None,
                "accessor": None if i % 2 else "hr.io:load_skill_sheet",
                "reason": "not_allowed",
                "code": f"hr/views.py:{i % 5}",
            }
        )
    out.append({**out[0], "field": '<img src="http://example.invalid/x.png">', "purpose": "</svg>"})
    return out


def _dump_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_the_page_is_self_contained_and_escaped() -> None:
    page = render_html(Summary().add_all(_records()), sources=["<v.jsonl>"])
    assert "<script" not in page
    assert 'src="http' not in page
    assert "&lt;img src=&quot;http://example.invalid/x.png&quot;&gt;" in page
    assert "&lt;/svg&gt;" in page
    assert "&lt;v.jsonl&gt;" in page
    assert re.findall(r'<svg id="([a-z-]+)"', page) == list(CHARTS)
    assert "default-src 'none'" in page
    # No URL of any kind, not even an SVG namespace: the only one is the escaped hostile value.
    assert set(re.findall(r"https?://[^&\s<]*", page)) == {"http://example.invalid/x.png"}
    benign = render_html(Summary().add_all(_records()[:-1]), sources=["v.jsonl"])
    assert re.search(r"https?:", benign, re.IGNORECASE) is None


@needs_chromium
def test_the_report_renders_offline_in_a_real_browser(tmp_path: Path) -> None:
    log = tmp_path / "v.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(log), "--html", str(page)])
    assert result.exit_code == 1, result.output

    dom, log_output = _dump_dom(page, tmp_path)
    for chart in CHARTS:
        assert f'<svg id="{chart}"' in dom
    assert dom.count("<rect") >= 24 + 3 + 1 + 1 + 5
    assert 'id="latest"' in dom
    assert "CONSOLE" not in log_output
    assert "Refused to" not in log_output  # nothing tried the network


@needs_chromium
def test_the_console_check_would_catch_errors(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("boom")</script></body></html>')
    _, log_output = _dump_dom(page, tmp_path)
    assert "CONSOLE" in log_output
