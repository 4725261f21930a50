"""Event records: a violation, a storm summary, an operational event, a count of drops.

Records are immutable and slotted from the guard to the sinks; each becomes a plain dict
(:meth:`to_dict`) only at a sink's boundary (structlog, a span event, the audit log, a capture).
Nothing here ever sees a guarded value: events are built from purposes, names and code locations.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ._state import state
from ._time import now_iso

__all__ = [
    "DROPPED",
    "SCHEMA",
    "SUMMARY",
    "VIOLATION",
    "VIOLATION_KEYS",
    "DroppedEvent",
    "OperationalEvent",
    "SummaryEvent",
    "ViolationEvent",
    "subject_hash",
]

SCHEMA = "purposeguard.violation/1"
VIOLATION = "purposeguard.violation"
SUMMARY = "purposeguard.violation_summary"
DROPPED = "purposeguard.dropped"

#: The only keys a violation event may carry (DESIGN §5); ``seq``/``prev_hash`` are added by the
#: audit log.
VIOLATION_KEYS = (
    "event", "schema", "ts", "decision", "mode", "enforced", "reason", "purpose", "allowed",
    "prohibited", "field", "accessor", "channel", "policy_id", "policy_version", "subject",
    "trace_id", "span_id", "service", "code",
)  # fmt: skip

#: The keys of a violation that its storm summary repeats.
_SUMMARY_KEYS = (
    "schema", "mode", "enforced", "reason", "purpose", "allowed", "prohibited", "field",
    "accessor", "channel", "policy_id", "policy_version", "service", "code",
)  # fmt: skip


class ViolationEvent(NamedTuple):
    """One violation (schema ``purposeguard.violation/1``): allowlisted facts only, never a
    value. A NamedTuple rather than a frozen dataclass: it is built on the deny path, where a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) costs five times as
    much."""

    ts: str
    mode: str
    reason: str
    purpose: str | None
    allowed: tuple[str, ...]
    prohibited: tuple[str, ...]
    field: str | None
    accessor: str | None
    channel: str
    policy_id: str | None
    policy_version: str | None
    subject: str | None
    service: str | None
    code: str | None
    trace_id: str | None = None
    span_id: str | None = None

    @property
    def name(self) -> str:
        return VIOLATION

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN §5 event, keys in :data:`VIOLATION_KEYS` order."""
        return {
            "event": VIOLATION,
            "schema": SCHEMA,
            "ts": self.ts,
            "decision": "deny",
            "mode": self.mode,
            "enforced": self.mode == "enforce",
            "reason": self.reason,
            "purpose": self.purpose,
            "allowed": list(self.allowed),
            "prohibited": list(self.prohibited),
            "field": self.field,
            "accessor": self.accessor,
            "channel": self.channel,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "subject": self.subject,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "service": self.service,
            "code": self.code,
        }

    def span_attributes(self) -> dict[str, Any]:
        """The span event's attributes: the same keys under ``purposeguard.``, nulls left out."""
        return {
            f"purposeguard.{k}": v
            for k, v in self.to_dict().items()
            if v is not None and k != "event"
        }


class SummaryEvent(NamedTuple):
    """How many identical violations one storm window suppressed, after its first."""

    first: ViolationEvent
    suppressed: int
    window_seconds: float
    ts: str

    @property
    def name(self) -> str:
        return SUMMARY

    def to_dict(self) -> dict[str, Any]:
        first = self.first.to_dict()
        out = {k: first[k] for k in _SUMMARY_KEYS}
        out.update(
            event=SUMMARY,
            ts=self.ts,
            decision="deny",
            count=self.suppressed,
            window_seconds=self.window_seconds,
        )
        return out


class DroppedEvent(NamedTuple):
    """Records a sink could not take (``sink`` names it), counted instead of lost silently."""

    lost: int
    sink: str
    ts: str

    @property
    def name(self) -> str:
        return DROPPED

    def to_dict(self) -> dict[str, Any]:
        return {"event": DROPPED, "ts": self.ts, "count": self.lost, "sink": self.sink}


class OperationalEvent(NamedTuple):
    """A mode change, a policy load or reload, a rejected claim, a provision, a subject change:
    ``fields`` are names, ids, counts and hashes, never a value of guarded data."""

    name: str
    fields: Mapping[str, Any]
    ts: str

    @classmethod
    def of(cls, name: str, fields: Mapping[str, Any]) -> OperationalEvent:
        return cls(name, MappingProxyType(dict(fields)), now_iso())

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, "ts": self.ts, **self.fields}


#: Any event record the emitter delivers.
Event = ViolationEvent | SummaryEvent | DroppedEvent | OperationalEvent


def subject_hash(subject_id: object) -> str | None:
    """The keyed hash (HMAC-SHA256, configured ``subject_key``) of a subject id; never the id."""
    key = state.subject_key
    if key is None or subject_id is None:
        return None
    return "hmac-sha256:" + hmac.new(key, str(subject_id).encode(), hashlib.sha256).hexdigest()[:32]
