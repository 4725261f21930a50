"""Questions about a use, answered without making it: ``check()``, ``explain()`` and
``check_subject()``.

Every answer comes from the same rules as a use: the reference decision for tags
(:mod:`purposeguard._decide`) and the field decision (:mod:`purposeguard._fields`) for fields and
subjects. Nothing is recorded and nothing is raised. ``check``'s answers are cached beside the
compiled policy they were made under (a new policy brings a new cache), so a question costs a
dict lookup whatever the number of distinct purposes asked about.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from . import _time
from ._compile import CompiledPolicy, PerGeneration, Tag, compile_policy
from ._decide import Decision, Rule
from ._fields import FieldBinding, FieldGuard, Record, decide, field_guard, question
from ._guard import Guard, field_ref
from ._policy import Policy
from ._state import state
from .exceptions import ConfigurationError, PolicyError

__all__ = ["check", "check_subject", "explain"]

#: answers kept per policy; past it the policy's answers start afresh (a cache, never a cliff:
#: 10,000 purposes times 25 tag sets fit)
ANSWER_LIMIT = 1 << 18
_Key = tuple[Any, ...]


class _Answers:
    """``check``'s answers under one compiled policy: ``plain[collected_for][purpose]`` for the
    common question, ``other[(purpose, collected_for, prohibited, field)]`` for the rest."""

    __slots__ = ("compiled", "last", "other", "plain", "questions", "size")

    def __init__(self, compiled: CompiledPolicy | None) -> None:
        self.compiled = compiled
        self.plain: dict[Any, dict[Any, Decision]] = {}
        #: the ``collected_for`` object asked about last and its answers: a call site passes the
        #: same tuple every time, and a long one then is not hashed again
        self.last: tuple[object, dict[Any, Decision]] = (None, {})
        self.other: dict[_Key, Decision] = {}
        #: check_subject's questions, bound: key → (guard, binding, answers without a subject)
        self.questions: dict[_Key, tuple[FieldGuard, FieldBinding, dict[Any, Decision]]] = {}
        self.size = 0

    def add(self, key: _Key, plain: bool, decision: Decision) -> None:
        if self.size >= ANSWER_LIMIT:
            self.plain, self.other, self.questions, self.size = {}, {}, {}, 0
            self.last = (None, {})
        purpose, collected_for = key[0], key[1]
        try:
            if plain:
                self.plain.setdefault(collected_for, {})[purpose] = decision
            else:
                self.other[key] = decision
        except TypeError:  # an unhashable purpose: answered, not cached
            return
        self.size += 1


#: the answers for the configured policy (replaced when it changes) and for others (policy=)
_current = _Answers(None)
_others: PerGeneration[str, _Answers] = PerGeneration(keep=16)
_compiled_for_policy: dict[int, tuple[Policy, CompiledPolicy]] = {}


def _compiled(policy: Policy | None) -> CompiledPolicy | None:
    if policy is None:
        return state.compiled
    hit = _compiled_for_policy.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    if len(_compiled_for_policy) > 16:
        _compiled_for_policy.clear()
    compiled = compile_policy(policy)
    _compiled_for_policy[id(policy)] = (policy, compiled)
    return compiled


def _answers_for(compiled: CompiledPolicy | None) -> _Answers:
    global _current
    if compiled is state.compiled:
        answers = _current
        if answers.compiled is not compiled:
            answers = _current = _Answers(compiled)
        return answers
    assert compiled is not None
    table = _others.get(compiled)
    other = table.get("")
    if other is None:
        other = table[""] = _Answers(compiled)
    return other


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
    the field's tags and strict category (the question is about the field, not a record:
    consent, subjects and retention are :func:`check_subject`'s); ``policy=`` decides against
    that policy instead of the configured one."""
    if policy is None and field is None and not prohibited:  # the common question, cached flat
        answers = _current
        if answers.compiled is state.compiled:
            last = answers.last
            try:
                if last[0] is collected_for:
                    return last[1][purpose]
                table = answers.plain[collected_for]
                if type(collected_for) is tuple:
                    answers.last = (collected_for, table)
                return table[purpose]
            except (KeyError, TypeError):
                pass
    return _answer(purpose, collected_for, prohibited, field, policy)


def _answer(
    purpose: Any,
    collected_for: Sequence[str],
    prohibited: Sequence[str],
    field: tuple[Any, str] | None,
    policy: Policy | None,
) -> Decision:
    compiled = _compiled(policy)
    answers = _answers_for(compiled)
    plain = field is None and not prohibited
    try:
        key: _Key = (purpose, _frozen(collected_for), _frozen(prohibited), field)
        found = answers.plain.get(key[1], {}).get(purpose) if plain else answers.other.get(key)
    except TypeError:  # unhashable arguments: answered, not cached
        key, found = (), None
    if found is not None:
        return found
    try:
        extra = Tag.of(collected_for, prohibited) if collected_for or prohibited else None
        if field is None:
            guard = Guard("check", [extra] if extra else [])
            rule, _ = guard.decide(purpose, guard.prepare(compiled))
        else:
            fguard = _question(field, extra)
            binding = fguard.bind(compiled, definition=False)
            rule, _ = decide(fguard, binding, purpose, None, None, None)
    except (PolicyError, ConfigurationError):
        rule = Rule("invalid_tag")
    decision = Decision.of(
        rule, purpose, compiled.id if compiled else None, compiled.version if compiled else None
    )
    if key and compiled is not None:
        answers.add(key, plain, decision)
    return decision


def _frozen(values: Sequence[str]) -> Any:
    return values if type(values) is tuple else tuple(values)  # a str stays a str: refused later


def _question(
    field: tuple[Any, str],
    extra: Tag | None,
    *,
    category: str | None = None,
    retention: timedelta | None = None,
) -> FieldGuard:
    if not (isinstance(field, tuple) and len(field) == 2 and isinstance(field[1], str)):
        raise ConfigurationError("field= takes a (class, field name) pair")
    owner, name = field
    path = field_ref(owner, name).path
    return question(
        path, extra, of=field_guard(owner, name), category=category, retention=retention
    )


def check_subject(
    purpose: str | None,
    *,
    subject: str | None,
    collected_for: Sequence[str] = (),
    prohibited: Sequence[str] = (),
    field: tuple[Any, str] | None = None,
    category: str | None = None,
    collected_at: datetime | None = None,
    retention: timedelta | None = None,
    policy: Policy | None = None,
) -> Decision:
    """:func:`check` for one data subject's data, by the rule a read of a guarded field
    follows (:mod:`purposeguard._fields`): a ``strict`` category (My Number; given as
    ``category=`` or the field's) may be used only for its closed list (``strict_category``) and
    consent never widens it; the configured registry's consents widen (``consent``) and its
    suspensions narrow (``suspended``); and, with ``collected_at``, data past its retention (the
    shortest of ``retention=``, the field's own, its policy entry's and its category's) is
    ``expired``. Never raises a violation and records nothing."""
    if retention is not None and collected_at is None:
        raise ConfigurationError("retention= needs collected_at=, the time of collection")
    compiled = state.compiled if policy is None else _compiled(policy)
    answers = _current if policy is None else None
    found: Any = None
    if answers is not None and answers.compiled is compiled:
        try:  # the same question asked again: one lookup
            found = answers.questions.get((collected_for, prohibited, field, category, retention))
        except TypeError:
            found = None
    if found is None:
        found = _bound_question(compiled, collected_for, prohibited, field, category, retention)
        if isinstance(found, Rule):
            return _decision(found, purpose, compiled)
    guard: FieldGuard
    binding: FieldBinding
    plain: dict[Any, Decision]
    guard, binding, plain = found
    try:
        base = plain.get(purpose)
    except TypeError:  # an unhashable purpose
        base = None
    if base is None:
        rule, _ = decide(guard, binding, purpose, None, None, None)
        base = _decision(rule, purpose, compiled)
        if len(plain) < _QUESTION_ANSWERS:
            with contextlib.suppress(TypeError):
                plain[purpose] = base
    registry = state.registry
    if (
        base.allowed
        and (collected_at is None or binding.retention_us is None)
        and (registry is None or subject is None or subject not in registry.restricted)
    ):
        return base  # nothing about the subject or the time to look up: the question's answer
    if not base.allowed and base.reason != "not_allowed":
        return base  # no consent or subject can widen it
    at = _time.epoch_us(collected_at)
    record = Record((), subject, at)
    now = _time.now_us() if at is not None else None
    rule, _ = decide(guard, binding, purpose, record, registry, now)
    return _decision(rule, purpose, compiled)


_QUESTION_ANSWERS = 4096


def _decision(rule: Rule, purpose: object, compiled: CompiledPolicy | None) -> Decision:
    return Decision.of(
        rule, purpose, compiled.id if compiled else None, compiled.version if compiled else None
    )


def _bound_question(
    compiled: CompiledPolicy | None,
    collected_for: Sequence[str],
    prohibited: Sequence[str],
    field: tuple[Any, str] | None,
    category: str | None,
    retention: timedelta | None,
) -> Rule | tuple[FieldGuard, FieldBinding, dict[Any, Decision]]:
    """check_subject's question bound to ``compiled`` (cached with the policy's answers), or the
    rule that ends it there (an unknown category, a malformed tag)."""
    answers = _answers_for(compiled)
    try:
        asked: _Key = (collected_for, prohibited, field, category, retention)
        key: _Key = (_frozen(collected_for), _frozen(prohibited), field, category, retention)
        hit = answers.questions.get(key)
    except TypeError:
        asked, key, hit = (), (), None
    if hit is not None:
        return hit
    if category is not None and compiled is not None and category not in compiled.policy.categories:
        return Rule("unknown_category")
    try:
        extra = Tag.of(collected_for, prohibited) if collected_for or prohibited else None
        if field is not None:
            guard = _question(field, extra, category=category, retention=retention)
        else:  # no tags at all: nothing is allowed, with the usual reasons
            tag = extra or Tag(())
            guard = question("check_subject", tag, category=category, retention=retention)
        binding = guard.bind(compiled, definition=False)
    except (PolicyError, ConfigurationError):
        return Rule("invalid_tag")
    bound: tuple[FieldGuard, FieldBinding, dict[Any, Decision]] = (guard, binding, {})
    if key and compiled is not None and len(answers.questions) < _QUESTION_ANSWERS:
        answers.questions[key] = bound
        with contextlib.suppress(TypeError):
            answers.questions[asked] = bound  # as asked (a list's tuple), found in one lookup
    return bound


_WHY = {
    "prohibited": "{shown} is {matched!r}, above it or below it, and that is prohibited",
    "not_allowed": "{shown} is not one of the allowed purposes or below one, and no purpose it "
    "is compatible with is",
    "no_purpose": "no purpose is active; declare one with pg.purpose(...)",
    "no_policy": "no policy is configured; call pg.configure(policy=...)",
    "invalid_tag": "the tags name purposes the policy does not declare, or are malformed",
    "strict_category": "the field is in strict category {matched!r}, whose closed list of "
    "purposes does not include {shown}; consent cannot widen it",
    "consent": "the data subject consented to {matched!r}, which {shown} is or is below",
    "expired": "the data is past its retention period",
    "suspended": "the data subject has suspended its use for this purpose",
    "unknown_category": "the category is not declared in the policy",
}


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
    compiled = _compiled(policy)
    version = f"policy {d.policy_id}@{d.policy_version}" if compiled else "no policy configured"
    data = f"data collected for {', '.join(sorted(collected_for)) or '(field tags)'}"
    if prohibited:
        data += f", prohibited for {', '.join(sorted(prohibited))}"
    shown = repr(d.purpose) if d.purpose is not None else "(none)"
    rule = d.rule
    if d.reason == "allowed":
        why = f"{shown} is {rule.matched!r} or below it" + (
            f", through its compatibility with {rule.through!r}" if rule.through else ""
        )
    elif d.reason == "unknown_purpose":
        why = f"{'the purpose' if d.purpose is None else shown} is not declared in the policy"
    else:
        why = _WHY.get(d.reason, d.reason).format(shown=shown, matched=rule.matched)
    verdict = "ALLOW" if d.allowed else f"DENY ({d.reason})"
    return f"{verdict}: {why}. [{data}; {version}]"
