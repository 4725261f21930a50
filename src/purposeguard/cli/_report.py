"""A self-contained HTML report: inline SVG charts drawn here, no script, no network.

A Content-Security-Policy of ``default-src 'none'`` makes the browser refuse any fetch, so the page
provably works offline; every value from the log is neutralized as on a terminal and then goes
through :func:`html.escape`. The page holds no URL at all: inline SVG in HTML needs no ``xmlns``.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections import Counter

from purposeguard.cli._neutralize import neutralize
from purposeguard.cli._query import Summary, weight

__all__ = ["render_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;width:100%;font-size:12px}
td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.num{text-align:right}.muted{color:#777}
svg{display:block;margin:.5em 0}svg text{font:11px system-ui,sans-serif;fill:#333}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em}
"""
_COLUMNS = ("ts", "mode", "purpose", "field", "accessor", "reason", "code", "trace_id")


def _esc(value: object) -> str:
    # The terminal's rule (controls and bidi overrides made visible, so nothing invisible hides
    # in the report), then HTML's own escaping: a browser reads <, & and quotes, a terminal
    # does not.
    return html.escape(neutralize(value, 500), quote=True)


def _bars(title: str, counts: list[tuple[str, int]], chart_id: str) -> str:
    """Horizontal bar chart of the largest entries."""
    if not counts:
        return f'<h2>{_esc(title)}</h2><p class="muted">none</p>'
    row, label_w, bar_w = 20, 320, 300
    peak = max(n for _, n in counts) or 1
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" width="{label_w + bar_w + 80}" '
        f'height="{row * len(counts) + 10}">',
        f"<title>{_esc(title)}</title>",
    ]
    for i, (label, n) in enumerate(counts):
        y = 5 + i * row
        w = max(1, round(bar_w * n / peak))
        short = label if len(label) <= 48 else label[:22] + "…" + label[-23:]
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_esc(short)}'
            f"<title>{_esc(label)}</title></text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 6}" fill="#c0392b"/>'
            f'<text x="{label_w + w + 4}" y="{y + 14}">{n}</text>'
        )
    parts.append("</svg>")
    return f"<div><h2>{_esc(title)}</h2>{''.join(parts)}</div>"


def _timeline(counts: list[tuple[str, int]]) -> str:
    """Vertical bar chart of violations per hour or day."""
    if not counts:
        return '<h2>Violations over time</h2><p class="muted">no timestamps</p>'
    width, height, pad = 1000, 220, 40
    step = (width - 2 * pad) / len(counts)
    peak = max(n for _, n in counts) or 1
    parts = [
        f'<svg id="chart-time" class="chart" role="img" width="{width}" height="{height + 40}">'
        "<title>Violations over time</title>",
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#999"/>',
        f'<text x="{pad - 4}" y="{pad}" text-anchor="end">{peak}</text>',
    ]
    label_every = max(1, len(counts) // 10)
    for i, (label, n) in enumerate(counts):
        h = (height - pad) * n / peak
        x = pad + i * step
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(step - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="#2c7fb8"><title>{_esc(label)}: {n}</title></rect>'
        )
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 16}">{_esc(label)}</text>')
    parts.append("</svg>")
    return f"<h2>Violations over time</h2>{''.join(parts)}"


def _table(summary: Summary) -> str:
    head = "".join(f"<th>{c}</th>" for c in (*_COLUMNS, "count"))
    rows = []
    for rec in reversed(summary.latest):
        cells = "".join(f"<td>{_esc(rec.get(c))}</td>" for c in _COLUMNS)
        rows.append(f'<tr>{cells}<td class="num">{weight(rec)}</td></tr>')
    body = "".join(rows) or f'<tr><td colspan="{len(_COLUMNS) + 1}">none</td></tr>'
    return f'<table id="latest"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _top(counter: Counter[str], n: int = 15) -> list[tuple[str, int]]:
    return counter.most_common(n)


def render_html(summary: Summary, *, sources: list[str], skipped: int = 0) -> str:
    """The whole report page for ``summary`` as one HTML string."""
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    span = (
        f"{summary.first_ts:%Y-%m-%d %H:%M}Z to {summary.last_ts:%Y-%m-%d %H:%M}Z"
        if summary.first_ts and summary.last_ts
        else "no timestamps"
    )
    skipped_note = f", {skipped} unreadable line(s) skipped" if skipped else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        "<title>purposeguard violations report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>purposeguard violations report</h1>"
        f'<p><strong id="total">{summary.total}</strong> violation(s) in {summary.records} '
        f"record(s), {span}{skipped_note}.<br>"
        f'<span class="muted">Sources: {_esc(", ".join(sources))}. Generated {generated}.'
        "</span></p>"
        f"{_timeline(summary.timeline())}"
        '<div class="grid">'
        f"{_bars('By purpose', _top(summary.by_purpose), 'chart-purpose')}"
        f"{_bars('By field', _top(summary.by_field), 'chart-field')}"
        f"{_bars('By accessor', _top(summary.by_accessor), 'chart-accessor')}"
        f"{_bars('By code location', _top(summary.by_code), 'chart-code')}"
        "</div>"
        f"<h2>Latest {len(summary.latest)} violation record(s)</h2>{_table(summary)}"
        "</body></html>\n"
    )
