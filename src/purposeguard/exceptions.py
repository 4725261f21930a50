"""The three families of errors: configuration, violation, and their common base."""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigurationError", "PolicyError", "PurposeGuardError", "PurposeViolation"]


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
