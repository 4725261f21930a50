"""The reference decision: DESIGN §3 written as plainly as possible.

This is the executable model. The compiled fast path (``_compile``) must agree with it on every
input; the property tests hold the two against each other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ._ids import ancestors, is_purpose_id, is_within

__all__ = ["ALLOWING", "Decision", "Rule", "decide", "decide_rule", "decide_use"]

#: The reasons of an allowing rule: ``consent`` is an allow that the subject's consent gave.
ALLOWING = frozenset({"allowed", "consent"})


@dataclass(frozen=True, slots=True)
class Rule:
    """Which rule decided: ``kind`` is the reason; ``matched`` the purpose of the data that
    matched (an allowed or prohibited one); ``through`` the compatible purpose used, if any."""

    kind: str
    matched: str | None = None
    through: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check. Frozen; ``bool(decision)`` is ``decision.allowed``; ``reason``
    is the deciding rule's kind (``allowed``, ``consent``, or why it denies)."""

    allowed: bool
    purpose: str | None
    policy_version: str | None
    rule: Rule
    policy_id: str | None = None

    @classmethod
    def of(
        cls, rule: Rule, purpose: object, policy_id: str | None, policy_version: str | None
    ) -> Decision:
        """The decision ``rule`` gives; a ``purpose`` that is not a purpose id is not shown."""
        shown = purpose if purpose is None or is_purpose_id(purpose) else None
        return cls(rule.kind in ALLOWING, shown, policy_version, rule, policy_id)  # type: ignore[arg-type]

    @property
    def reason(self) -> str:
        return self.rule.kind

    def __bool__(self) -> bool:
        return self.allowed

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, reason={self.reason!r}, purpose={self.purpose!r}, "
            f"policy={self.policy_id}@{self.policy_version}, rule={self.rule!r})"
        )


def decide_rule(
    purpose: str | None,
    collected_for: Collection[str],
    prohibited: Collection[str],
    purposes: Collection[str],
    compatible: Mapping[str, Collection[str]],
) -> Rule:
    """Decide one access purpose against one field's intended purposes (A, P).

    ``purposes`` is the policy's set of declared ids; ``compatible`` maps a purpose to the purposes
    it is declared ``compatible_with``.
    """
    if purpose is None:
        return Rule("no_purpose")
    if not is_purpose_id(purpose) or purpose not in purposes:
        return Rule("unknown_purpose")
    for p in prohibited:  # ↕P: the purpose, its ancestors and its descendants
        if is_within(purpose, p) or is_within(p, purpose):
            return Rule("prohibited", matched=p)
    for a in collected_for:  # ↓A
        if is_within(purpose, a):
            return Rule("allowed", matched=a)
    # compatible_with: X (and its descendants) may be used wherever Y may, Y ∈ ↓A; not transitive.
    for x in (purpose, *ancestors(purpose)):
        for y in compatible.get(x, ()):
            for a in collected_for:
                if is_within(y, a):
                    return Rule("allowed", matched=a, through=y)
    return Rule("not_allowed")


def decide(
    purpose: str | None,
    collected_for: Collection[str],
    prohibited: Collection[str],
    purposes: Collection[str],
    compatible: Mapping[str, Collection[str]],
    *,
    policy_id: str | None = None,
    policy_version: str | None = None,
) -> Decision:
    rule = decide_rule(purpose, collected_for, prohibited, purposes, compatible)
    return Decision.of(rule, purpose, policy_id, policy_version)


def decide_use(
    purpose: str | None,
    tags: Sequence[tuple[Collection[str], Collection[str]]],
    purposes: Collection[str],
    compatible: Mapping[str, Collection[str]],
    *,
    strict: Collection[str] | None = None,
    category: str | None = None,
    consent: Collection[str] = (),
    subject_consents: Collection[str] = (),
    suspended: Collection[str] = (),
    retention: int | None = None,
    collected_at: int | None = None,
    now: int | None = None,
) -> Rule:
    """The field decision (``purposeguard._fields``) written as plainly as possible: the
    executable model that every channel of a guarded field is held against.

    ``tags`` are the field's (collected_for, prohibited) pairs, all of which must allow;
    ``strict`` the closed purpose list of its strict category (None if it has none);
    ``consent`` the purposes the record's subject consented to on the record;
    ``subject_consents`` and ``suspended`` what the subject registry holds for the record's
    subject (``"*"`` suspends every purpose); ``retention``, ``collected_at`` and ``now`` in
    microseconds (``now=None``: a question that leaves retention out).
    """
    tags = tags or [((), ())]  # no tags: nothing is allowed, reasons as usual
    rules = [decide_rule(purpose, a, p, purposes, compatible) for a, p in tags]
    for kind in ("no_purpose", "unknown_purpose", "prohibited", "not_allowed"):
        found = next((r for r in rules if r.kind == kind), None)
        if found is not None:
            rule = found
            break
    else:
        rule = rules[-1]
    if purpose is None or rule.kind not in ("allowed", "not_allowed"):
        return rule
    if rule.kind == "allowed" and strict is not None:
        if not any(is_within(purpose, s) for s in strict):
            return Rule("strict_category", matched=category)
    elif rule.kind == "not_allowed":
        if strict is not None:
            return rule
        widened = [decide_rule(purpose, (*a, *consent), p, purposes, compatible) for a, p in tags]
        if consent and all(r.kind == "allowed" for r in widened):
            rule = Rule(
                "consent", matched=next((c for c in consent if is_within(purpose, c)), None)
            )
        else:
            root = next((c for c in subject_consents if is_within(purpose, c)), None)
            if root is None:
                return rule
            rule = Rule("consent", matched=root)
    for root in suspended:
        if root == "*" or is_within(purpose, root) or is_within(root, purpose):
            return Rule("suspended", matched=root)
    if (
        retention is not None
        and now is not None
        and (collected_at is None or now >= collected_at + retention)
    ):
        return Rule("expired")
    return rule
