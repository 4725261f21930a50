"""purposeguard: purpose limitation for personal data, enforced inside running services.

Tag data with the purposes it was collected for, declare the purpose of the code that uses it,
and purposeguard blocks (or, in monitor mode, records) every use outside those purposes.
"""

from __future__ import annotations

from . import testing
from ._check import check, explain
from ._compile import Tag
from ._config import ENV_AUDIT_KEY, ENV_SERVICE, configure, get_policy, reload_policy
from ._context import (
    PurposeAwareExecutor,
    current_purpose,
    purpose,
    run_in_executor,
    submit,
    with_purpose_context,
)
from ._decide import Decision, Rule
from ._events import SCHEMA
from ._guard import GuardedFunction, accessor, guard_function
from ._load import load_policy
from ._notice import FieldPurposes, PurposeNotice, purpose_notice, retention_for
from ._policy import (
    Category,
    FieldTag,
    Mode,
    Policy,
    Purpose,
    Recipient,
    Retention,
)
from ._version import __version__
from .exceptions import ConfigurationError, PolicyError, PurposeGuardError, PurposeViolation
from .models import (
    CollectedAt,
    CollectedFor,
    Consent,
    GuardedModel,
    SealedPickleError,
    SubjectId,
    guarded,
    purposes_of,
)
from .provision import LegalGround, ProvisionViolation, provide, provides, providing
from .registry import Registry, SubjectStatus, check_subject, get_registry
from .sinks.audit import AuditLog
from .stores import ProvisionRecord

__all__ = [
    "ENV_AUDIT_KEY",
    "ENV_SERVICE",
    "SCHEMA",
    "AuditLog",
    "Category",
    "CollectedAt",
    "CollectedFor",
    "ConfigurationError",
    "Consent",
    "Decision",
    "FieldPurposes",
    "FieldTag",
    "GuardedFunction",
    "GuardedModel",
    "LegalGround",
    "Mode",
    "Policy",
    "PolicyError",
    "ProvisionRecord",
    "ProvisionViolation",
    "Purpose",
    "PurposeAwareExecutor",
    "PurposeGuardError",
    "PurposeNotice",
    "PurposeViolation",
    "Recipient",
    "Registry",
    "Retention",
    "Rule",
    "SealedPickleError",
    "SubjectId",
    "SubjectStatus",
    "Tag",
    "__version__",
    "accessor",
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

flush = testing.flush
