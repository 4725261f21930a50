"""Provision of personal data to someone outside: allowed only on the subject's consent or a legal
ground, and recorded every time.

The reference policy: "will not provide it to third parties without prior consent from the
individual", except (1) when required by law, (2) to protect a person's life, body or property
when consent is hard to obtain, (3) for public health or the sound development of children when
consent is hard to obtain, (4) to cooperate with government bodies when asking for consent would
interfere. Entrustment to a contractor, business succession and joint use are not provision to a
third party; they are checked against the recipient's purposes and recorded as what they are.
Strict categories (My Number) go only to recipients whose policy entry lists the category,
whatever the basis.

A denial is a violation like any other (channel ``provision``): recorded, then raised as
:class:`~purposeguard.PurposeViolation` in enforce mode, let through in monitor mode (and then
recorded with the reason it should have been denied).
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._context import current_purpose
from ._decide import Rule
from ._derivation import uncacheable
from ._emitter import emitter
from ._events import subject_hash
from ._fields import binding_for
from ._guard import Guard, field_ref, violate
from ._ids import is_name, is_within, validate_subject
from ._state import state
from .exceptions import ConfigurationError, PolicyError, ProvisionViolation, PurposeViolation
from .registry import Registry, get_registry
from .stores import ProvisionRecord

__all__ = ["LegalGround", "ProvisionViolation", "provide", "provides", "providing"]

P = ParamSpec("P")
R = TypeVar("R")

#: What a provision to a recipient of each non-third-party kind is recorded as.
BASIS_BY_KIND = {"contractor": "entrustment", "successor": "succession", "joint_use": "joint_use"}
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
MAX_JUSTIFICATION = 2000


class LegalGround(enum.Enum):
    """The four exceptions to consent in the reference policy ([2] items 1-4, APPI art. 27(1))."""

    #: 1. When required by law.
    REQUIRED_BY_LAW = "required_by_law"
    #: 2. To protect a person's life, body or property, when consent is difficult to obtain.
    PROTECT_LIFE_BODY_PROPERTY = "protect_life_body_property"
    #: 3. For public health or the sound development of children, when consent is difficult.
    PUBLIC_HEALTH_CHILDREN = "public_health_children"
    #: 4. To cooperate with national or local government bodies in their legal duties, when
    #: obtaining consent may interfere with those duties.
    GOVERNMENT_COOPERATION = "government_cooperation"


@dataclass(frozen=True, slots=True)
class _Plan:
    """A provision checked and ready to record: its record, stamped with an id and the time when
    it is recorded (after the data left, for ``providing`` and ``provides``)."""

    registry: Registry
    draft: ProvisionRecord

    def record(self) -> ProvisionRecord:
        record = replace(self.draft, id="prov-" + uuid.uuid4().hex, ts=self.registry.clock())
        self.registry.add_record(record)
        emitter.record(
            "purposeguard.provision",
            {
                "id": record.id,
                "recipient": record.recipient if is_name(record.recipient) else None,
                "recipient_kind": record.recipient_kind,
                "fields": list(record.fields),
                "basis": record.basis,
                "ground": record.ground,
                "consent_ref": record.consent_ref,
                "purpose": record.purpose,
                "violation": record.violation,
                "subject": subject_hash(record.subject),
                "policy_id": record.policy_id,
                "policy_version": record.policy_version,
                "service": state.service,
            },
        )
        return record


def _field_names(
    fields: Iterable[str | tuple[Any, str]],
) -> tuple[tuple[str, ...], tuple[tuple[Any, str], ...]]:
    """(names, the (Model, field) pairs among them) — names only, never values."""
    if isinstance(fields, str):
        raise ConfigurationError("fields= takes a list of field names, not a str")
    names: list[str] = []
    pairs: list[tuple[Any, str]] = []
    for item in fields:
        if isinstance(item, tuple):
            if len(item) != 2 or not isinstance(item[0], type) or not isinstance(item[1], str):
                raise ConfigurationError("fields= takes (Model, 'field') pairs, not other tuples")
            names.append(field_ref(*item).path)
            pairs.append(item)
        elif isinstance(item, str) and _FIELD_NAME.match(item) and len(item) <= 256:
            names.append(item)
        else:
            raise ConfigurationError(
                "fields= takes field names (identifiers, dotted allowed) or (Model, 'field') "
                "pairs: the names of the data items, never their values"
            )
    if not names:
        raise ConfigurationError("fields= must name at least one data item")
    return tuple(names), tuple(pairs)


def _frozen(items: Iterable[Any]) -> Any:
    """A tuple of ``items``; a str stays a str, so the checks refuse it rather than spell it."""
    return items if isinstance(items, str) else tuple(items)


def _check_basis(basis: object, justification: object) -> tuple[LegalGround | None, str | None]:
    if basis is None:
        if justification is not None:
            raise ConfigurationError(
                "justification= goes with a legal ground: pass basis=pg.LegalGround.<GROUND>"
            )
        return None, None
    if not isinstance(basis, LegalGround):
        raise ConfigurationError(
            "basis= takes a pg.LegalGround (REQUIRED_BY_LAW, PROTECT_LIFE_BODY_PROPERTY, "
            "PUBLIC_HEALTH_CHILDREN, GOVERNMENT_COOPERATION) or None for the subject's consent"
        )
    if not isinstance(justification, str) or not justification.strip():
        raise ConfigurationError(
            f"provision under {basis.name} needs justification=: say which law or which "
            "emergency, in words a reviewer can check"
        )
    if len(justification) > MAX_JUSTIFICATION:
        raise ConfigurationError(f"justification= has at most {MAX_JUSTIFICATION} characters")
    return basis, justification.strip()


def _plan(
    recipient: str,
    subject: str,
    fields: Iterable[str | tuple[Any, str]],
    basis: LegalGround | None,
    justification: str | None,
    categories: Iterable[str],
    label: str | None,
) -> _Plan:
    uncacheable()  # a provision is recorded every time: no cache may stand in for one
    registry = get_registry()
    if registry is None:
        raise ConfigurationError(
            "provision must be recorded: configure a subject registry with "
            "pg.configure(registry=PATH_OR_REGISTRY) first"
        )
    validate_subject(subject)
    names, pairs = _field_names(fields)
    ground, text = _check_basis(basis, justification)
    if isinstance(categories, str):
        raise ConfigurationError("categories= takes a list of category names, not a str")
    wanted = set(categories)
    compiled = state.compiled
    purpose = current_purpose()
    known = is_name(recipient)
    guard = Guard(label or f"provision:{recipient if known else '<invalid>'}", ())
    guard.install(guard.prepare(compiled))
    spec = compiled.policy.recipients.get(recipient) if compiled is not None and known else None
    kind = spec.kind if spec is not None else "unknown"
    if compiled is not None:
        for pair in pairs:  # the field's category, as a read of it knows it
            try:
                of_field = binding_for(*pair, compiled).category
            except PolicyError:
                of_field = None  # a field without purposes carries no category
            if of_field is not None:
                wanted.add(of_field)

    def plan(
        basis_label: str, consent_ref: str | None = None, violation: str | None = None
    ) -> _Plan:
        draft = ProvisionRecord(
            id="",
            ts=registry.clock(),
            recipient=recipient,
            recipient_kind=kind,
            subject=subject,
            fields=names,
            basis=basis_label,
            ground=ground.value if ground else None,
            justification=text,
            consent_ref=consent_ref,
            purpose=purpose,
            policy_id=compiled.id if compiled else None,
            policy_version=compiled.version if compiled else None,
            violation=violation,
        )
        return _Plan(registry, draft)

    def deny(reason: str, matched: str | None = None) -> _Plan:
        # returns only in monitor mode: the provision goes ahead, recorded with its violation
        try:
            violate(guard, purpose, Rule(reason, matched=matched), None, "provision",
                    subject_hash(subject))  # fmt: skip
        except PurposeViolation as exc:
            attrs = {name: getattr(exc, name) for name in PurposeViolation._ATTRS}
            raise ProvisionViolation(recipient=recipient if known else None, **attrs) from None
        basis_label = "legal_ground" if ground else BASIS_BY_KIND.get(kind, "none")
        return plan(basis_label, violation=reason)

    if compiled is None:
        return deny("no_policy")
    if spec is None:
        return deny("unknown_recipient")
    for name in sorted(wanted):
        category = compiled.policy.categories.get(name)
        if category is None:
            raise ConfigurationError(
                f"category {name!r} is not declared in policy {compiled.id}@{compiled.version}"
            )
        if category.strict and name not in spec.categories:
            return deny("strict_category", name)

    def purpose_fits() -> str | None:
        if not spec.purposes:
            return None
        if purpose is None:
            return "no_purpose"
        if any(is_within(purpose, p) for p in spec.purposes):
            return None
        return "not_allowed"

    status = (
        registry.status(subject)
        if subject in registry.restricted or subject in registry.consenting
        else None
    )
    if ground is not None:
        return plan("legal_ground")  # the law's exceptions override consent and suspensions
    if status is not None and status.use_suspension(purpose) is not None:
        return deny("suspended", status.use_suspension(purpose))
    if spec.kind != "third_party":
        problem = purpose_fits()
        return deny(problem) if problem else plan(BASIS_BY_KIND[spec.kind])
    if status is not None and status.provision_suspended(recipient):
        return deny("provision_suspended")
    consent_ref = status.consent_for_recipient(recipient) if status is not None else None
    if consent_ref is None:
        return deny("no_consent")
    problem = purpose_fits()
    if problem:
        return deny(problem)
    return plan("consent", consent_ref)


def provide(
    recipient: str,
    *,
    subject: str,
    fields: Iterable[str | tuple[Any, str]],
    basis: LegalGround | None = None,
    justification: str | None = None,
    categories: Iterable[str] = (),
) -> ProvisionRecord:
    """Check and record that the named data items of ``subject`` are given to ``recipient``.

    Call it just before the data leaves. ``recipient`` is a name under ``recipients:`` in the
    policy. ``fields`` are field names or ``(Model, "field")`` pairs (never values). ``basis``
    is None for the subject's consent to this recipient, or a :class:`LegalGround` with a
    ``justification``. ``categories`` names categories of the data (a ``(Model, field)`` pair's
    category in the policy is added). Returns the stored record.

    Raises :class:`~purposeguard.PurposeViolation` when the provision is not allowed (enforce
    mode), :class:`~purposeguard.ConfigurationError` when the call itself is malformed or no
    registry is configured.
    """
    return _plan(recipient, subject, fields, basis, justification, categories, None).record()


class providing:
    """``with pg.providing(recipient, subject=..., fields=[...]) as handle:`` — checked on entry
    (a denial raises before anything is sent), recorded on a clean exit only (a failed send is no
    provision). ``handle.record`` is the stored record after the block."""

    __slots__ = ("_args", "_plan", "record")

    def __init__(
        self,
        recipient: str,
        *,
        subject: str,
        fields: Iterable[str | tuple[Any, str]],
        basis: LegalGround | None = None,
        justification: str | None = None,
        categories: Iterable[str] = (),
    ) -> None:
        self._args = (
            recipient,
            subject,
            _frozen(fields),
            basis,
            justification,
            _frozen(categories),
        )
        self._plan: _Plan | None = None
        self.record: ProvisionRecord | None = None

    def __enter__(self) -> providing:
        self._plan = _plan(*self._args, None)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if et is None and self._plan is not None:
            self.record = self._plan.record()


def provides(
    recipient: str,
    *,
    subject: str,
    fields: Iterable[str | tuple[Any, str]],
    basis: LegalGround | None = None,
    justification: str | None = None,
    categories: Iterable[str] = (),
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function that sends data out. ``subject`` names its parameter that holds the
    subject id. Each call is checked before the function runs and recorded after it returns
    (sync and async functions)."""
    fields, categories = _frozen(fields), _frozen(categories)
    _field_names(fields)
    _check_basis(basis, justification)

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        if subject not in signature.parameters:
            raise ConfigurationError(
                f"provides(subject={subject!r}): {fn.__qualname__} has no such parameter"
            )
        label = f"{fn.__module__}:{fn.__qualname__}"

        def planned(args: Any, kwargs: Any) -> _Plan:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            who = bound.arguments[subject]
            return _plan(recipient, who, fields, basis, justification, categories, label)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                plan = planned(args, kwargs)
                result = await fn(*args, **kwargs)
                plan.record()
                return result

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            plan = planned(args, kwargs)
            result = fn(*args, **kwargs)
            plan.record()
            return result

        return run

    return decorate
