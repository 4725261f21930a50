"""Sinks that receive violation records: the tamper-evident audit log."""

from __future__ import annotations

from purposeguard.sinks.audit import AUDIT_KEY_ENV, AuditLog

__all__ = ["AUDIT_KEY_ENV", "AuditLog"]
