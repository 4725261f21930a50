"""``check()`` and ``explain()``: questions about a use, answered without making it.

A decision is cached on the compiled policy (a new policy brings a new cache); nothing is
recorded and nothing is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _config
from ._compile import CompiledPolicy, Tag, compile_policy
from ._decide import Decision, Rule
from ._guard import FieldRef, Guard, field_ref
from ._ids import is_purpose_id
from ._policy import Policy
from .exceptions import ConfigurationError, PolicyError

__all__ = ["check", "explain"]

_state = _config.state
_compiled_for_policy: dict[int, tuple[Policy, CompiledPolicy]] = {}
_CHECK_CACHE_LIMIT = 4096


def _compiled(policy: Policy | None) -> CompiledPolicy | None:
    if policy is None:
        return _config.state.compiled
    hit = _compiled_for_policy.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    if len(_compiled_for_policy) > 16:
        _compiled_for_policy.clear()
    compiled = compile_policy(policy)
    _compiled_for_policy[id(policy)] = (policy, compiled)
    return compiled


def check(
    purpose: str | None,
    *,
    collected_for: Sequence[str] = (),
    prohibited: Sequence[str] = (),
    field: tuple[Any, str] | None = None,
    policy: Policy | None = None,
) -> Decision:
    """Decide whether data with these purposes may be used for ``purpose``. Never raises a
    violation and records nothing: it is a question, not a use. ``field=(Model, "name")`` takes
    the field's tags; ``policy=`` decides against that policy instead of the configured one."""
    if policy is None and field is None and not prohibited:  # the common question, cached flat
        try:
            return _state.compiled._check_plain[collected_for][purpose]  # type: ignore[union-attr,no-any-return]
        except (KeyError, TypeError, AttributeError):
            pass
    compiled = _state.compiled if policy is None else _compiled(policy)
    try:
        return compiled._check_cache[(purpose, collected_for, prohibited, field)]  # type: ignore[union-attr,no-any-return]
    except (KeyError, TypeError, AttributeError):
        return _check_slow(compiled, purpose, collected_for, prohibited, field)


def _check_slow(
    compiled: CompiledPolicy | None,
    purpose: Any,
    collected_for: Sequence[str],
    prohibited: Sequence[str],
    field: tuple[Any, str] | None,
) -> Decision:
    sources: list[Tag | FieldRef] = []
    try:
        if collected_for or prohibited:
            sources.append(Tag.of(collected_for, prohibited))
        if field is not None:
            sources.append(field_ref(*field))
        guard = Guard("check", "check", sources)
        guard.install(guard.prepare(compiled))
        rule, _ = guard.decide(purpose)
        if rule.kind == "allowed" and field is not None and compiled is not None:
            closed = _strict_closed(compiled, field)
            if closed is not None and purpose not in closed:
                rule = Rule("not_allowed")  # as a read of the field says: outside the closed list
    except (PolicyError, ConfigurationError, TypeError):
        rule = Rule("invalid_tag")
    shown = purpose if purpose is None or is_purpose_id(purpose) else None
    decision = Decision(
        rule.kind == "allowed",
        rule.kind,
        shown,
        compiled.version if compiled else None,
        rule,
        compiled.id if compiled else None,
    )
    if compiled is not None and len(compiled._check_cache) < _CHECK_CACHE_LIMIT:
        try:
            compiled._check_cache[(purpose, collected_for, prohibited, field)] = decision
            if field is None and not prohibited:
                compiled._check_plain.setdefault(collected_for, {})[purpose] = decision
        except TypeError:  # unhashable arguments: answer without caching
            pass
    return decision


def _strict_closed(compiled: CompiledPolicy, field: tuple[Any, str]) -> frozenset[str] | None:
    """The closed purpose set of the strict category ``field`` is in (its class's
    ``CollectedFor(category=...)``, else the policy's ``fields:`` entry), or None."""
    owner, name = field
    layout = getattr(owner, "__purposeguard_layout__", None)
    field_guard = getattr(layout, "guards", {}).get(name) if layout is not None else None
    category = getattr(field_guard, "category", None)
    if not isinstance(category, str):
        category = compiled.field_categories.get(field_ref(owner, name).path)
    return compiled.strict.get(category) if category is not None else None


def explain(
    purpose: str | None,
    *,
    collected_for: Sequence[str] = (),
    prohibited: Sequence[str] = (),
    field: tuple[Any, str] | None = None,
    policy: Policy | None = None,
) -> str:
    """The decision of :func:`check`, in words."""
    d = check(
        purpose, collected_for=collected_for, prohibited=prohibited, field=field, policy=policy
    )
    compiled = _config.state.compiled if policy is None else _compiled(policy)
    version = f"policy {d.policy_id}@{d.policy_version}" if compiled else "no policy configured"
    data = f"data collected for {', '.join(sorted(collected_for)) or '(field tags)'}"
    if prohibited:
        data += f", prohibited for {', '.join(sorted(prohibited))}"
    shown = repr(d.purpose) if d.purpose is not None else "(none)"
    rule = d.rule
    why = {
        "allowed": f"{shown} is {rule.matched!r} or below it"
        + (f", through its compatibility with {rule.through!r}" if rule.through else ""),
        "prohibited": f"{shown} is {rule.matched!r}, above it or below it, and that is prohibited",
        "not_allowed": f"{shown} is not one of the allowed purposes or below one, and no purpose "
        "it is compatible with is",
        "no_purpose": "no purpose is active; declare one with pg.purpose(...)",
        "unknown_purpose": f"{'the purpose' if d.purpose is None else shown} is not declared in "
        "the policy",
        "no_policy": "no policy is configured; call pg.configure(policy=...)",
        "invalid_tag": "the tags name purposes the policy does not declare, or are malformed",
        "strict_category": f"the field is in strict category {rule.matched!r}, whose closed list "
        f"of purposes does not include {shown}; consent cannot widen it",
        "expired": "the data is past its retention period",
        "suspended": "the data subject has suspended its use for this purpose",
    }.get(d.reason, d.reason)
    verdict = "ALLOW" if d.allowed else f"DENY ({d.reason})"
    return f"{verdict}: {why}. [{data}; {version}]"
