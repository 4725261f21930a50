"""The one rule for showing a value that came from data: an audit log, a registry store, a policy
file, a command-line argument.

Every channel applies it and then adds only what its medium needs: a terminal line gets it as
is (``click.echo``), a rich table cell gets it inside a :class:`rich.text.Text` (never parsed as
markup), an HTML page gets it and then :func:`html.escape`. JSON output does not use it: JSON
carries the exact data, ASCII-escaped.
"""

from __future__ import annotations

__all__ = ["neutralize"]


def neutralize(value: object, limit: int = 200) -> str:
    """A printable, single-line rendering of ``value``, at most ``limit`` characters before
    escaping (longer values end in ``…``).

    Every character that :meth:`str.isprintable` rejects is replaced by its visible Python
    escape: controls (``\\x1b``, ``\\r``, ``\\x08``, NUL, ``\\n``), format characters such as the
    bidi overrides (``\\u202e``), line and paragraph separators and lone surrogates. No escape
    sequence can therefore reach a terminal, no line can be overwritten or reordered, and the
    escaped form stays readable.
    """
    text = value if isinstance(value, str) else "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
