"""Notification of the purpose of use (a data-subject request): for each guarded field of a
model, the purposes it was collected for, what they mean, every purpose it may be used under
now, its category and its retention; and, for one subject, their consents and suspensions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ._compile import CompiledPolicy
from ._fields import binding_for, field_guard
from ._state import state
from .exceptions import ConfigurationError, PolicyError
from .registry import get_registry

__all__ = ["FieldPurposes", "PurposeNotice", "purpose_notice", "retention_for"]


@dataclass(frozen=True, slots=True)
class FieldPurposes:
    """One field in a :class:`PurposeNotice`."""

    field: str
    path: str
    purposes: tuple[str, ...]
    descriptions: tuple[tuple[str, str], ...]
    usable_for: tuple[str, ...]
    prohibited: tuple[str, ...]
    category: str | None
    strict: bool
    retention: timedelta | None

    def to_json(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "path": self.path,
            "purposes": [{"id": p, "description": d} for p, d in self.descriptions],
            "usable_for": list(self.usable_for),
            "prohibited": list(self.prohibited),
            "category": self.category,
            "strict": self.strict,
            "retention_days": None if self.retention is None else self.retention.days,
        }


@dataclass(frozen=True, slots=True)
class PurposeNotice:
    """What to tell a data subject who asks for the purposes of use of their data."""

    model: str
    policy_id: str
    policy_version: str
    fields: tuple[FieldPurposes, ...]
    subject_status: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "purposeguard.purpose_notice/1",
            "model": self.model,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "fields": [f.to_json() for f in self.fields],
            "subject_status": self.subject_status,
        }


def _fields(cls: type, compiled: CompiledPolicy) -> list[str]:
    """The fields of ``cls`` that are tagged: by the class itself or by the policy's paths."""
    prefix = f"{cls.__module__}.{cls.__qualname__}."
    names = {
        path[len(prefix) :]
        for path in compiled.field_tags
        if path.startswith(prefix) and "." not in path[len(prefix) :]
    }
    layout = getattr(cls, "__purposeguard_layout__", None)
    names.update(getattr(layout, "guards", None) or ())
    names.update(getattr(cls, "__purposeguard_fields__", None) or ())
    return sorted(names)


def retention_for(cls: type, name: str) -> timedelta | None:
    """The retention period of field ``name`` of ``cls``, counted from the record's collection
    time: the shortest of its ``CollectedFor(retention=...)``, the configured policy's
    ``fields:`` entry and its category's; None if it has none."""
    guard = field_guard(cls, name)
    compiled = state.compiled
    if compiled is None:
        return guard.own_retention if guard is not None else None
    try:
        return binding_for(cls, name, compiled).retention
    except PolicyError:  # an untagged field: nothing holds it to a period
        return None


def purpose_notice(cls: type, *, subject: str | None = None) -> PurposeNotice:
    """The notification of the purposes of use for the guarded fields of ``cls`` (a
    ``GuardedModel``, a ``@guarded`` dataclass, or any class listed under ``fields:`` in the
    policy). With ``subject=`` and a configured registry, the subject's consents and
    suspensions are included. Raises ConfigurationError without a policy."""
    compiled = state.compiled
    if compiled is None:
        raise ConfigurationError("no policy is configured; call pg.configure(policy=...)")
    policy = compiled.policy
    entries: list[FieldPurposes] = []
    for name in _fields(cls, compiled):
        binding = binding_for(cls, name, compiled)
        collected_for = tuple(sorted({p for t in binding.tags for p in t.collected_for}))
        prohibited = tuple(sorted({p for t in binding.tags for p in t.prohibited}))
        entries.append(
            FieldPurposes(
                field=name,
                path=f"{cls.__module__}.{cls.__qualname__}.{name}",
                purposes=collected_for,
                descriptions=tuple(
                    (p, policy.purposes[p].description if p in policy.purposes else "")
                    for p in collected_for
                ),
                usable_for=tuple(sorted(binding.usable)),
                prohibited=prohibited,
                category=binding.category,
                strict=binding.closed is not None,
                retention=binding.retention,
            )
        )
    status = None
    registry = get_registry()
    if subject is not None and registry is not None:
        status = registry.status(subject).to_json()
    return PurposeNotice(
        model=f"{cls.__module__}.{cls.__qualname__}",
        policy_id=compiled.id,
        policy_version=compiled.version,
        fields=tuple(entries),
        subject_status=status,
    )
