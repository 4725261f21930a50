"""purposeguard: purpose limitation for personal data, enforced inside running services.

Tag data with the purposes it was collected for, declare the purpose of the code that uses it,
and purposeguard blocks (or, in monitor mode, records) every use outside those purposes.

The top level holds what an application writes: the policy and its schema, configuration, the
purpose context, guards and markers, questions, subjects and provision, and the errors. Records
that come back from it live in their modules (``purposeguard.models.Tag``,
``purposeguard.registry.SubjectStatus``, ``purposeguard.stores.ProvisionRecord``, ...).
"""

from __future__ import annotations

from . import testing
from ._cache import cache
from ._check import check, check_subject, explain
from ._config import configure, flush, get_policy, reload_policy
from ._context import (
    PurposeAwareExecutor,
    current_purpose,
    purpose,
    run_in_executor,
    submit,
    with_purpose_context,
)
from ._decide import Decision
from ._guard import accessor, guard_function
from ._load import load_policy
from ._notice import purpose_notice, retention_for
from ._policy import Category, FieldTag, Policy, Purpose, Recipient, Retention
from ._version import __version__
from .exceptions import (
    ConfigurationError,
    PolicyError,
    ProvisionViolation,
    PurposeGuardError,
    PurposeViolation,
    SealedPickleError,
)
from .models import (
    CollectedAt,
    CollectedFor,
    Consent,
    GuardedModel,
    SubjectId,
    guarded,
    purposes_of,
)
from .provision import LegalGround, provide, provides, providing
from .registry import Registry, get_registry
from .sinks.audit import AuditLog

__all__ = [
    "AuditLog",
    "Category",
    "CollectedAt",
    "CollectedFor",
    "ConfigurationError",
    "Consent",
    "Decision",
    "FieldTag",
    "GuardedModel",
    "LegalGround",
    "Policy",
    "PolicyError",
    "ProvisionViolation",
    "Purpose",
    "PurposeAwareExecutor",
    "PurposeGuardError",
    "PurposeViolation",
    "Recipient",
    "Registry",
    "Retention",
    "SealedPickleError",
    "SubjectId",
    "__version__",
    "accessor",
    "cache",
    "check",
    "check_subject",
    "configure",
    "current_purpose",
    "explain",
    "flush",
    "get_policy",
    "get_registry",
    "guard_function",
    "guarded",
    "load_policy",
    "provide",
    "provides",
    "providing",
    "purpose",
    "purpose_notice",
    "purposes_of",
    "reload_policy",
    "retention_for",
    "run_in_executor",
    "submit",
    "testing",
    "with_purpose_context",
]
