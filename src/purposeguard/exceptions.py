"""Every public error purposeguard raises, in three families.

- **Configuration** (:class:`ConfigurationError`, :class:`PolicyError`): a tag, a purpose id, a
  setting or a policy is wrong. Raised when the class or function is defined, the policy loaded or
  ``configure()`` called, never at the first read.
- **Violation** (:class:`PurposeViolation`, :class:`ProvisionViolation`,
  :class:`SealedPickleError`): guarded data was used outside its purposes (enforce mode).
- **Sink** failures (a log, a span, the audit log) are never raised: they are logged once per kind,
  rate-limited, counted, and never change a decision.

Factored out of the modules that raise them so that every module can import them without an
import cycle (as structlog's ``exceptions.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "PolicyError",
    "ProvisionViolation",
    "PurposeGuardError",
    "PurposeViolation",
    "SealedPickleError",
]


class PurposeGuardError(Exception):
    """Base of every error purposeguard raises on purpose.

    Deliberately neither an ``AttributeError`` (``hasattr``/``getattr(obj, name, default)``
    would swallow it) nor an ``OSError`` (every ``except OSError`` around I/O would).
    """


class ConfigurationError(PurposeGuardError, ValueError):
    """A tag, a purpose id or a setting is wrong; raised at definition or configure time."""


class PolicyError(ConfigurationError):
    """A policy could not be loaded or does not fit the code that uses it.

    ``file`` is the policy's path (or ``"<python>"``), ``path`` the key path inside it (for
    example ``"purposes.recruitment.mode"``), ``fix`` what to do about it.
    """

    def __init__(
        self, message: str, *, file: str = "<python>", path: str = "", fix: str = ""
    ) -> None:
        self.file = file
        self.path = path
        self.message = message
        self.fix = fix
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(f"{where}{message}" + (f" ({fix})" if fix else ""))

    def with_file(self, file: str) -> PolicyError:
        """The same error, about the policy file ``file``."""
        return PolicyError(self.message, file=file, path=self.path, fix=self.fix)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_policy_error, (self.message, self.file, self.path, self.fix))


def _rebuild_policy_error(message: str, file: str, path: str, fix: str) -> PolicyError:
    return PolicyError(message, file=file, path=path, fix=fix)


class PurposeViolation(PurposeGuardError):
    """Guarded data was used for a purpose it was not collected for (enforce mode).

    Carries ``purpose`` (the active purpose or ``None``), ``allowed`` and ``prohibited`` (the
    purposes of the data), ``field`` or ``accessor`` (what was used), ``channel``, ``reason``
    (``not_allowed``, ``prohibited``, ``no_purpose``, ``unknown_purpose``, ...), ``policy_id``
    and ``policy_version``. The message never contains a value of the data.
    """

    _ATTRS = (
        "purpose",
        "allowed",
        "prohibited",
        "field",
        "accessor",
        "channel",
        "reason",
        "policy_id",
        "policy_version",
    )

    def __init__(
        self,
        *,
        purpose: str | None,
        allowed: tuple[str, ...],
        prohibited: tuple[str, ...] = (),
        field: str | None = None,
        accessor: str | None = None,
        channel: str = "attribute",
        reason: str,
        policy_id: str | None = None,
        policy_version: str | None = None,
    ) -> None:
        self.purpose = purpose
        self.allowed = tuple(allowed)
        self.prohibited = tuple(prohibited)
        self.field = field
        self.accessor = accessor
        self.channel = channel
        self.reason = reason
        self.policy_id = policy_id
        self.policy_version = policy_version
        super().__init__(self._message())

    def _message(self) -> str:
        what = f"field {self.field}" if self.field else f"accessor {self.accessor}"
        version = (
            f"policy {self.policy_id}@{self.policy_version}" if self.policy_id else "no policy"
        )
        if self.reason == "no_purpose":
            return (
                f"{what} was used with no active purpose ({version}); declare the purpose "
                f"with pg.purpose(...); allowed: {', '.join(self.allowed) or 'nothing'}"
            )
        hints = {
            "prohibited": f"{self.purpose!r} is prohibited for it ({', '.join(self.prohibited)})",
            "unknown_purpose": f"{self.purpose!r} is not a purpose of the policy; declare it there",
            "no_policy": "no policy is configured; call pg.configure(policy=...)",
            "expired": "its retention period has passed, so it may no longer be used for any "
            "purpose; delete or anonymize it",
            "suspended": "its data subject asked to suspend its use for this purpose; resume it "
            "only on the subject's request (Registry.resume_use)",
            "strict_category": "it is in a strict category (such as My Number) whose closed "
            "purpose list does not include this purpose; consent cannot widen it",
        }
        if self.reason in hints:
            hint = hints[self.reason]
        else:
            hint = (
                f"it was collected for {', '.join(self.allowed) or 'nothing'}; use it under one "
                f"of those, or add {self.purpose!r} to its CollectedFor if the policy permits"
            )
        return f"{what} used for purpose {self.purpose!r}: {self.reason} ({version}); {hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_violation, ({name: getattr(self, name) for name in self._ATTRS},))


def _rebuild_violation(attrs: dict[str, Any]) -> PurposeViolation:
    return PurposeViolation(**attrs)


#: What to do about a denied provision, by reason.
_PROVISION_HINTS = {
    "no_consent": "record the subject's consent with registry.grant_consent(subject, "
    "recipients=[...]), or pass basis=pg.LegalGround.<GROUND> with a justification",
    "provision_suspended": "the subject asked to stop provision to this recipient; only a "
    "legal ground (basis=pg.LegalGround...) allows it now",
    "suspended": "the subject suspended use of their data for this purpose",
    "strict_category": "a strict category goes only to recipients that list it under "
    "categories: in the policy",
    "unknown_recipient": "declare the recipient under recipients: in the policy",
    "not_allowed": "the recipient receives data only for the purposes listed in its policy "
    "entry; run this under one of them",
    "no_purpose": "declare the purpose with pg.purpose(...)",
    "no_policy": "configure a policy with pg.configure(policy=...)",
}


class ProvisionViolation(PurposeViolation):
    """A provision was denied. A :class:`PurposeViolation` (``channel`` is ``"provision"``) that
    also names the ``recipient``; never the subject or a value."""

    _ATTRS: tuple[str, ...] = (*PurposeViolation._ATTRS, "recipient")  # type: ignore[assignment]

    def __init__(self, *, recipient: str | None = None, **attrs: Any) -> None:
        self.recipient = recipient
        super().__init__(**attrs)

    def _message(self) -> str:
        version = f"policy {self.policy_id}@{self.policy_version}"
        to = self.recipient or "an invalid recipient name"
        hint = _PROVISION_HINTS.get(self.reason, "see the policy")
        return (
            f"provision to {to} ({self.accessor}) under purpose {self.purpose!r} denied: "
            f"{self.reason} ({version}); {hint}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_provision, ({name: getattr(self, name) for name in self._ATTRS},))


def _rebuild_provision(attrs: dict[str, Any]) -> ProvisionViolation:
    return ProvisionViolation(**attrs)


class SealedPickleError(PurposeGuardError, TypeError):
    """A guarded value was pickled, which its model refuses (see ``purposeguard_pickle``).

    A ``TypeError`` as well, as pickle's own refusals are, so that code that guards a pickle
    call with ``except TypeError`` keeps working."""
