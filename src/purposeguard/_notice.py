"""Notification of the purpose of use (a data-subject request): for each guarded field of a
model, the purposes it was collected for, what they mean, every purpose it may be used under
now, its category and its retention; and, for one subject, their consents and suspensions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import _config
from ._compile import CompiledPolicy, Tag
from ._ids import is_within
from .exceptions import ConfigurationError

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


def _tags(cls: type, compiled: CompiledPolicy) -> dict[str, Tag]:
    prefix = f"{cls.__module__}.{cls.__qualname__}."
    tags: dict[str, Tag] = {
        path[len(prefix) :]: tag
        for path, tag in compiled.field_tags.items()
        if path.startswith(prefix) and "." not in path[len(prefix) :]
    }
    declared = getattr(cls, "__purposeguard_fields__", None) or {}
    for name, tag in declared.items():
        if name in tags:  # declared on the class and in the policy: the use must fit both
            tags[name] = Tag.of(
                set(tag.collected_for) | set(tags[name].collected_for),
                set(tag.prohibited) | set(tags[name].prohibited),
            )
        else:
            tags[name] = tag
    return tags


def _category(cls: type, name: str, compiled: CompiledPolicy) -> str | None:
    layout = getattr(cls, "__purposeguard_layout__", None)
    guard = getattr(layout, "guards", {}).get(name) if layout is not None else None
    category = getattr(guard, "category", None)
    if category is None:
        spec = compiled.policy.fields.get(f"{cls.__module__}.{cls.__qualname__}.{name}")
        category = spec.category if spec is not None else None
    return category if isinstance(category, str) else None


def retention_for(cls: type, name: str) -> timedelta | None:
    """The retention period of field ``name`` of ``cls``, counted from the record's collection
    time: the shortest of its ``CollectedFor(retention=...)``, the configured policy's
    ``fields:`` entry and its category's; None if it has none."""
    layout = getattr(cls, "__purposeguard_layout__", None)
    guard = getattr(layout, "guards", {}).get(name) if layout is not None else None
    if guard is not None:  # a guarded field: the period its reads are held to
        retention = getattr(guard, "retention", None)
        return retention if isinstance(retention, timedelta) else None
    compiled = _config.state.compiled
    if compiled is None:
        return None
    spec = compiled.policy.fields.get(f"{cls.__module__}.{cls.__qualname__}.{name}")
    category = _category(cls, name, compiled)
    found = compiled.policy.categories.get(category) if category else None
    periods = [
        p
        for p in (spec.retention if spec else None, found.retention if found else None)
        if p is not None
    ]
    return min(periods) if periods else None


def _usable(
    cls: type, name: str, tag: Tag, compiled: CompiledPolicy, strict: Any
) -> frozenset[str]:
    try:
        from .models import purposes_of  # the model's own guard knows best

        return frozenset(purposes_of(cls, name))
    except (ImportError, ConfigurationError):
        allowed = compiled.allowed_set(tag)
        if strict is not None:
            allowed = frozenset(p for p in allowed if any(is_within(p, r) for r in strict.purposes))
        return allowed


def purpose_notice(cls: type, *, subject: str | None = None) -> PurposeNotice:
    """The notification of the purposes of use for the guarded fields of ``cls`` (a
    ``GuardedModel``, a ``@guarded`` dataclass, or any class listed under ``fields:`` in the
    policy). With ``subject=`` and a configured registry, the subject's consents and
    suspensions are included. Raises ConfigurationError without a policy."""
    compiled = _config.state.compiled
    if compiled is None:
        raise ConfigurationError("no policy is configured; call pg.configure(policy=...)")
    policy = compiled.policy
    entries: list[FieldPurposes] = []
    for name, tag in sorted(_tags(cls, compiled).items()):
        category = _category(cls, name, compiled)
        spec = policy.categories.get(category) if category else None
        strict = spec if spec is not None and spec.strict else None
        entries.append(
            FieldPurposes(
                field=name,
                path=f"{cls.__module__}.{cls.__qualname__}.{name}",
                purposes=tag.collected_for,
                descriptions=tuple(
                    (p, policy.purposes[p].description if p in policy.purposes else "")
                    for p in tag.collected_for
                ),
                usable_for=tuple(sorted(_usable(cls, name, tag, compiled, strict))),
                prohibited=tag.prohibited,
                category=category,
                strict=strict is not None,
                retention=retention_for(cls, name),
            )
        )
    status = None
    registry = _config.state.registry
    if subject is not None and registry is not None:
        status = registry.status(subject).to_json()
    return PurposeNotice(
        model=f"{cls.__module__}.{cls.__qualname__}",
        policy_id=compiled.id,
        policy_version=compiled.version,
        fields=tuple(entries),
        subject_status=status,
    )
