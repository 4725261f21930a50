"""The subject registry: consents, withdrawals, suspension of use and of third-party provision,
and the records of provision, per data subject.

The decision path never touches the store for a subject without restrictions: the registry keeps
a frozenset of restricted subject ids in memory (``Registry.restricted``), so the hot test is
``subject in restricted``. A change made through a registry is installed before the call returns,
so it is in force at the next decision in every thread; changes made by other processes sharing
the store are picked up by a poller at most ``refresh_interval`` seconds later.

Subject ids are kept in the store (a request to disclose the records of provision needs them) and
nowhere else: events carry their keyed hash, messages never carry them.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from ._emitter import emitter
from ._events import subject_hash
from ._ids import MAX_SUBJECT_LENGTH, is_within, names, purpose_ids, validate_subject
from ._state import policy_fields, state
from ._time import format_ts
from .exceptions import ConfigurationError
from .stores import (
    ALL,
    ProvisionRecord,
    Snapshot,
    Store,
)
from .stores.memory import MemoryStore

__all__ = [
    "DEFAULT_PROVISION_RETENTION",
    "MAX_SUBJECT_LENGTH",
    "Registry",
    "SubjectStatus",
    "get_registry",
    "validate_subject",
]

#: How long provision records are kept when no policy says otherwise (three years).
DEFAULT_PROVISION_RETENTION = timedelta(days=3 * 365)
#: Records older than the retention period are purged at most this often, after a provision.
PURGE_EVERY = timedelta(hours=1)
_STATUS_CACHE_LIMIT = 10_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    """Where one subject stands: active consents, withdrawals and suspensions.

    ``suspended_use`` holds suspended purpose ids, or ``"*"`` for every purpose;
    ``suspended_provision`` holds recipient names, or ``"*"`` for every third party.
    """

    consented_purposes: frozenset[str] = frozenset()
    consented_recipients: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    withdrawn_purposes: frozenset[str] = frozenset()
    withdrawn_recipients: frozenset[str] = frozenset()
    suspended_use: frozenset[str] = frozenset()
    suspended_provision: frozenset[str] = frozenset()

    def use_suspension(self, purpose: str | None) -> str | None:
        """The suspension that covers ``purpose`` (``"*"``, or a purpose that is it, above it or
        below it: like a prohibited purpose, a suspension is fail-closed), else None."""
        if not self.suspended_use:
            return None
        if ALL in self.suspended_use or purpose is None:
            return ALL
        for root in self.suspended_use:
            if is_within(purpose, root) or is_within(root, purpose):
                return root
        return None

    def consent_for_purpose(self, purpose: str) -> str | None:
        for root in self.consented_purposes:
            if is_within(purpose, root):
                return root
        return None

    def consent_for_recipient(self, recipient: str) -> str | None:
        return self.consented_recipients.get(recipient)

    def provision_suspended(self, recipient: str) -> bool:
        return ALL in self.suspended_provision or recipient in self.suspended_provision

    def to_json(self) -> dict[str, Any]:
        return {
            "consented_purposes": sorted(self.consented_purposes),
            "consented_recipients": sorted(self.consented_recipients),
            "withdrawn_purposes": sorted(self.withdrawn_purposes),
            "withdrawn_recipients": sorted(self.withdrawn_recipients),
            "suspended_use": sorted(self.suspended_use),
            "suspended_provision": sorted(self.suspended_provision),
        }


_EMPTY = SubjectStatus()
_live: weakref.WeakSet[Registry] = weakref.WeakSet()


class Registry:
    """Per-subject consents, suspensions and provision records, over a :class:`Store`.

    ``store`` is a store object, a path to a SQLite file (created if absent), or None for an
    in-memory store. ``refresh_interval`` (seconds) is how often the registry looks for changes
    made by other processes sharing the store; None turns the poller off (then call
    :meth:`refresh`). ``provision_retention`` is how long provision records are kept when no
    policy is configured (the policy's ``retention.provision_records`` wins). ``clock`` returns
    the current UTC time (for tests).
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        refresh_interval: float | None = 1.0,
        provision_retention: timedelta = DEFAULT_PROVISION_RETENTION,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if store is None:
            store = MemoryStore()
        elif isinstance(store, str | os.PathLike):
            from .stores.sqlite import SQLiteStore

            store = SQLiteStore(store)
        if refresh_interval is not None and refresh_interval <= 0:
            raise ConfigurationError("refresh_interval must be a positive number of seconds")
        self.store: Store = store
        self.refresh_interval = refresh_interval
        self.provision_retention = provision_retention
        self.clock = clock
        self._lock = threading.Lock()
        self._sync_lock = threading.RLock()  # one reader of the store's changes at a time
        self._snapshot = Snapshot(-1, frozenset(), frozenset())
        #: subjects with a suspension or a withdrawn consent: the hot path reads only this
        self.restricted: frozenset[str] = frozenset()
        #: subjects with an active consent (read only on the deny path)
        self.consenting: frozenset[str] = frozenset()
        self._status: dict[str, SubjectStatus] = {}
        self._last_purge: datetime | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._closed = False
        self.refresh()
        self._start_poller()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Registry {type(self.store).__name__} restricted={len(self.restricted)}>"

    # --- keeping the in-memory view current -----------------------------------------------------

    def refresh(self) -> None:
        """Read the restricted and consenting subjects from the store now (all of them)."""
        with self._sync_lock:
            snapshot = self.store.snapshot()
            with self._lock:
                self._snapshot = snapshot
                self._status = {}
                self.consenting = snapshot.consenting
                self.restricted = snapshot.restricted

    def sync(self) -> None:
        """Catch up with the store: only the subjects changed since the last read are read
        again (all of them if the store's change log no longer reaches back that far)."""
        with self._sync_lock:
            found = self.store.changes_since(self._snapshot.version)
            if found is None:
                self.refresh()
                return
            version, subjects = found
            if version == self._snapshot.version:
                return
            flags = self.store.flags(subjects) if subjects else {}
            restricted = {s for s, (r, _) in flags.items() if r}
            consenting = {s for s, (_, c) in flags.items() if c}
            with self._lock:
                r_old, c_old = self.restricted, self.consenting
                # copy-on-write: readers always see a whole frozenset, never a set mid-change
                if restricted != (r_old & subjects):
                    r_old = (r_old - subjects) | restricted
                if consenting != (c_old & subjects):
                    c_old = (c_old - subjects) | consenting
                self._snapshot = Snapshot(version, r_old, c_old)
                self._status = {k: v for k, v in self._status.items() if k not in subjects}
                self.consenting = c_old
                self.restricted = r_old

    def _start_poller(self) -> None:
        if self.refresh_interval is None or isinstance(self.store, MemoryStore):
            return
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name="purposeguard-registry", daemon=True
        )
        self._poller.start()

    def _poll(self) -> None:
        interval = self.refresh_interval
        assert interval is not None
        while not self._stop.wait(interval):
            try:
                if self.store.version() != self._snapshot.version:
                    self.sync()
            except Exception:  # a store error never changes what is in force
                continue

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._sync_lock = threading.RLock()
        self._poller = None
        if not self._closed:
            self._start_poller()

    def close(self) -> None:
        """Stop the poller and close the store."""
        self._closed = True
        self._stop.set()
        poller, self._poller = self._poller, None
        if poller is not None and poller is not threading.current_thread():
            poller.join(timeout=5)
        self.store.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- questions ------------------------------------------------------------------------------

    def status(self, subject: str) -> SubjectStatus:
        """The subject's consents, withdrawals and suspensions (cached until the next change)."""
        validate_subject(subject)
        if subject not in self.restricted and subject not in self.consenting:
            return _EMPTY
        cached = self._status.get(subject)
        if cached is not None:
            return cached
        version = self._snapshot.version
        purposes: set[str] = set()
        recipients: dict[str, str] = {}
        withdrawn_p: set[str] = set()
        withdrawn_r: set[str] = set()
        for row in self.store.consents(subject):
            if row.kind == "purpose":
                (purposes if row.active else withdrawn_p).add(row.target)
            elif row.active:
                recipients[row.target] = row.ref
            else:
                withdrawn_r.add(row.target)
        use: set[str] = set()
        provision: set[str] = set()
        for s in self.store.suspensions(subject):
            (use if s.scope == "use" else provision).add(s.target)
        status = SubjectStatus(
            frozenset(purposes),
            MappingProxyType(recipients),
            frozenset(withdrawn_p - purposes),
            frozenset(withdrawn_r - recipients.keys()),
            frozenset(use),
            frozenset(provision),
        )
        with self._lock:
            if self._snapshot.version == version:  # else a change landed meanwhile: don't cache
                if len(self._status) >= _STATUS_CACHE_LIMIT:
                    self._status = {}
                self._status[subject] = status
        return status

    def use_suspension(self, subject: str, purpose: str | None) -> str | None:
        """The suspension of use covering ``purpose`` for this subject (``"*"``, or a purpose
        that is it, above it or below it), or None. A set membership test for a subject without
        restrictions."""
        if subject not in self.restricted:
            return None
        return self.status(subject).use_suspension(purpose)

    def purpose_consent(self, subject: str, purpose: str) -> str | None:
        """The purpose the subject consented to that ``purpose`` is, or is below, or None."""
        if subject not in self.consenting:
            return None
        return self.status(subject).consent_for_purpose(purpose)

    # --- changes (each in force at the next decision in this process) ---------------------------

    def _changed(
        self,
        action: str,
        subject: str,
        purposes: Iterable[str] = (),
        recipients: Iterable[str] = (),
    ) -> None:
        """Install the change here, then record it (subject as its keyed hash) for the audit log."""
        self.sync()
        emitter.record(
            "purposeguard.subject_change",
            {
                "action": action,
                "subject": subject_hash(subject),
                "purposes": sorted(purposes),
                "recipients": sorted(recipients),
                **policy_fields(),
            },
        )

    def grant_consent(
        self,
        subject: str,
        *,
        purposes: Iterable[str] | str = (),
        recipients: Iterable[str] | str = (),
    ) -> dict[str, str]:
        """Record the subject's consent to ``purposes`` and to provision to ``recipients``.
        Returns target → consent ref (the ref appears in provision records)."""
        validate_subject(subject)
        ps, rs = purpose_ids(purposes, "grant_consent"), names(recipients, "grant_consent")
        at = self.clock()
        refs = {p: self.store.grant(subject, "purpose", p, at) for p in ps}
        refs.update({r: self.store.grant(subject, "recipient", r, at) for r in rs})
        self._changed("grant_consent", subject, ps, rs)
        return refs

    def withdraw_consent(
        self,
        subject: str,
        *,
        purposes: Iterable[str] | str = (),
        recipients: Iterable[str] | str = (),
    ) -> int:
        """Withdraw consents; returns how many were active. The history is kept."""
        validate_subject(subject)
        ps = purpose_ids(purposes, "withdraw_consent")
        rs = names(recipients, "withdraw_consent")
        at = self.clock()
        n = sum(self.store.withdraw(subject, "purpose", p, at) for p in ps)
        n += sum(self.store.withdraw(subject, "recipient", r, at) for r in rs)
        self._changed("withdraw_consent", subject, ps, rs)
        return n

    def suspend_use(self, subject: str, purposes: Iterable[str] | str | None = None) -> None:
        """Suspend use of the subject's data for ``purposes`` (and the purposes above and below
        them), or for every purpose if None."""
        validate_subject(subject)
        targets = (ALL,) if purposes is None else purpose_ids(purposes, "suspend_use")
        at = self.clock()
        for target in targets:
            self.store.suspend(subject, "use", target, at)
        self._changed("suspend_use", subject, targets)

    def resume_use(self, subject: str, purposes: Iterable[str] | str | None = None) -> int:
        """Lift suspensions of use: those named, or every one if None. Returns how many."""
        validate_subject(subject)
        if purposes is None:
            n = self.store.resume(subject, "use", None)
        else:
            n = sum(self.store.resume(subject, "use", p) for p in purpose_ids(purposes, "resume"))
        self._changed(
            "resume_use", subject, (ALL,) if purposes is None else purpose_ids(purposes, "")
        )
        return n

    def suspend_provision(
        self, subject: str, recipients: Iterable[str] | str | None = None
    ) -> None:
        """Stop provision of the subject's data to ``recipients``, or to every third party."""
        validate_subject(subject)
        targets = (ALL,) if recipients is None else names(recipients, "suspend_provision")
        at = self.clock()
        for target in targets:
            self.store.suspend(subject, "provision", target, at)
        self._changed("suspend_provision", subject, recipients=targets)

    def resume_provision(self, subject: str, recipients: Iterable[str] | str | None = None) -> int:
        validate_subject(subject)
        if recipients is None:
            n = self.store.resume(subject, "provision", None)
        else:
            n = sum(
                self.store.resume(subject, "provision", r)
                for r in names(recipients, "resume_provision")
            )
        targets = (ALL,) if recipients is None else names(recipients, "")
        self._changed("resume_provision", subject, recipients=targets)
        return n

    # --- provision records ----------------------------------------------------------------------

    def retention(self) -> timedelta:
        """How long provision records are kept: the configured policy's
        ``retention.provision_records`` if it sets one, else ``provision_retention``."""
        compiled = state.compiled
        if compiled is not None and "provision_records" in (
            compiled.policy.retention.model_fields_set
        ):
            return compiled.policy.retention.provision_records
        return self.provision_retention

    def add_record(self, record: ProvisionRecord) -> None:
        """Store a provision record, and purge expired ones at most once an hour."""
        self.store.add_provision(record)
        now = self.clock()
        if self._last_purge is None or now - self._last_purge >= PURGE_EVERY:
            self._last_purge = now
            self.purge(now)

    def records(self, subject: str) -> list[ProvisionRecord]:
        """The subject's provision records (for a request to disclose them), oldest first.
        Records past the retention period are left out even before :meth:`purge` deletes them
        (purging runs after a provision, at most once an hour)."""
        found = self.store.provisions(validate_subject(subject))
        cutoff = self.clock() - self.retention()
        return [r for r in found if r.ts >= cutoff]

    def export_records(self, subject: str) -> str:
        """The subject's provision records as a JSON document."""
        records = self.records(subject)
        return json.dumps(
            {
                "schema": "purposeguard.provision_records/1",
                "subject": subject,
                "generated_at": format_ts(self.clock()),
                "retention_days": self.retention().days,
                "records": [r.to_json() for r in records],
            },
            ensure_ascii=False,
            indent=2,
        )

    def purge(self, now: datetime | None = None) -> int:
        """Delete provision records older than the retention period; returns how many."""
        now = self.clock() if now is None else now
        return self.store.purge_provisions(now - self.retention())


def get_registry() -> Registry | None:
    """The configured subject registry (``pg.configure(registry=...)``), or ``None``."""
    registry = state.registry
    return registry if isinstance(registry, Registry) else None


def _reset_after_fork() -> None:
    for registry in list(_live):
        registry._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
