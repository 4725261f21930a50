"""Verifying an audit log's hash chain, headers and signed checkpoints.

The verifier trusts nothing it reads: it stops at the first record that breaks the chain and names
its ``seq``; it never raises on malformed input. Files may be given in any order (they are sorted by
the seq of their first record), rotated files may be gzipped.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from purposeguard.cli._read import iter_lines, open_source
from purposeguard.sinks.audit import (
    CHECKPOINT_EVENT,
    GENESIS_HASH,
    HEADER_EVENT,
    canonical_json,
    key_id,
    line_hash,
    sign,
)

__all__ = ["VerifyResult", "verify_log"]

_SIGNED = frozenset({HEADER_EVENT, CHECKPOINT_EVENT})


@dataclass(slots=True)
class VerifyResult:
    """The outcome of :func:`verify_log`; ``failure`` is None when the chain is intact."""

    files: list[str] = field(default_factory=list)
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    last_signed_seq: int | None = None
    failure: str | None = None
    bad_seq: int | None = None
    warnings: list[str] = field(default_factory=list)
    torn_tails: list[str] = field(default_factory=list)
    unsigned: int = 0
    unchecked_signatures: int = 0
    sealed: bool = False

    def exit_code(self, *, allow_unsigned: bool = False, strict: bool = False) -> int:
        """0 intact, 1 tampered/unsigned/unsealed, 2 signed but no key to check it with."""
        if self.failure is not None:
            return 1
        if self.unsigned and not allow_unsigned:
            return 1
        if self.unchecked_signatures and not allow_unsigned:
            return 2
        return 1 if strict and self.torn_tails else 0


class _Tampered(Exception):
    def __init__(self, seq: int | None, message: str) -> None:
        super().__init__(message)
        self.seq = seq


def _first_seq(path: str) -> int:
    try:
        with open_source(path) as stream:
            for line in iter_lines(stream, path):
                if line.data is not None:
                    try:
                        seq = json.loads(line.data)["seq"]
                    except (ValueError, TypeError, KeyError, RecursionError):
                        continue
                    if type(seq) is int:
                        return seq
    except OSError:
        pass
    return -1


class _Verifier:
    def __init__(self, key: bytes | None, expect_sealed: bool, result: VerifyResult) -> None:
        self.key, self.kid = key, key_id(key) if key else None
        self.expect_sealed, self.r = expect_sealed, result
        self.expected_seq: int | None = None
        self.prev_hash: str | None = None
        self.every = 0
        self.last_event: object = None
        self.last_final = False

    def file(self, path: str) -> None:
        first = True
        with open_source(path) as stream:
            for line in iter_lines(stream, path):
                where = f"{path}:{line.lineno}"
                data = line.data
                if data is not None and data.endswith(b"\r"):
                    data = data[:-1]
                if data is not None and line.lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
                rec = _parse(data)
                if rec is None:
                    if not line.terminated:
                        self.r.torn_tails.append(f"{where} (after seq {self.r.last_seq})")
                        return
                    raise _Tampered(self.expected_seq, f"{where}: unreadable line inside the log")
                assert data is not None
                self.record(rec, data, where, first)
                first = False
        if first:
            self.r.warnings.append(f"{path}: no records")

    def record(self, rec: dict[str, object], data: bytes, where: str, first: bool) -> None:
        seq, prev, event = rec.get("seq"), rec.get("prev_hash"), rec.get("event")
        if type(seq) is not int or not isinstance(prev, str):
            raise _Tampered(self.expected_seq, f"{where}: record without seq/prev_hash")
        if first:
            if event != HEADER_EVENT:
                raise _Tampered(seq, f"{where}: file does not start with a header (head cut off?)")
            self.every = rec.get("checkpoint_every")  # type: ignore[assignment]
            if type(self.every) is not int or self.every < 2:
                raise _Tampered(seq, f"{where}: header has no valid checkpoint_every")
            if self.expected_seq is None:
                self.r.first_seq = seq
                if seq == 0 and prev != GENESIS_HASH:
                    raise _Tampered(seq, f"{where}: seq 0 must follow the genesis hash")
                if seq != 0:
                    self.r.warnings.append(
                        f"chain starts at seq {seq}: the files before it were not given"
                    )
                self.expected_seq, self.prev_hash = seq, prev
        elif event == HEADER_EVENT:
            raise _Tampered(seq, f"{where}: header in the middle of a file")
        if seq != self.expected_seq:
            raise _Tampered(
                seq,
                f"{where}: seq {seq} where {self.expected_seq} was expected "
                "(records deleted, duplicated or reordered)",
            )
        if prev != self.prev_hash:
            raise _Tampered(
                seq, f"{where}: prev_hash does not match the record before (edited or reordered)"
            )
        if seq > 0 and seq % self.every == 0 and event not in _SIGNED:
            raise _Tampered(seq, f"{where}: checkpoint missing (one is due every {self.every})")
        if event in _SIGNED:
            self.signed(rec, data, where, seq)
        self.r.records += 1
        self.r.last_seq = seq
        self.expected_seq, self.prev_hash = seq + 1, line_hash(data)
        self.r.last_hash = self.prev_hash
        self.last_final = event == CHECKPOINT_EVENT and rec.get("final") is True

    def signed(self, rec: dict[str, object], data: bytes, where: str, seq: int) -> None:
        sig = rec.get("sig")
        try:
            canonical = canonical_json(rec) == data
        except (TypeError, ValueError):
            canonical = False
        if not canonical:
            raise _Tampered(seq, f"{where}: signed record is not in canonical form (edited)")
        if sig is None:
            self.r.unsigned += 1
            return
        if self.key is None:
            self.r.unchecked_signatures += 1
            return
        if rec.get("kid") != self.kid:
            raise _Tampered(
                seq,
                f"{where}: signed with key id {rec.get('kid')!r}, the key given has id "
                f"{self.kid!r} (wrong key, or a forged record)",
            )
        if not isinstance(sig, str) or not hmac.compare_digest(
            sig.encode("utf-8", "surrogatepass"), sign(self.key, rec).encode("ascii")
        ):
            raise _Tampered(seq, f"{where}: bad signature (forged or edited)")
        self.r.last_signed_seq = seq


def _parse(data: bytes | None) -> dict[str, object] | None:
    if data is None:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def verify_log(
    paths: Sequence[str],
    *,
    key: bytes | None = None,
    expect_sealed: bool = False,
    expect_genesis: bool = False,
) -> VerifyResult:
    """Verify the audit log made of ``paths`` (active and rotated files, any order).

    Args:
        paths: the files; sorted by the seq of their first record before checking.
        key: the HMAC key; without one, signatures are counted as unchecked.
        expect_sealed: fail unless the log ends with the final checkpoint written by ``close()``,
            which turns a cut-off tail into a detectable failure.
        expect_genesis: fail unless the chain starts at seq 0, so a missing oldest file is a
            failure rather than a note.

    Never raises on file content: tampering and unreadable files are reported in the result.
    """
    result = VerifyResult()
    ordered = sorted(paths, key=lambda p: (_first_seq(p), p))
    result.files = ordered
    verifier = _Verifier(key, expect_sealed, result)
    try:
        for path in ordered:
            verifier.file(path)
        if expect_genesis and result.first_seq not in (0, None):
            raise _Tampered(result.first_seq, "the chain does not start at seq 0 (files missing?)")
        if expect_sealed and not verifier.last_final:
            raise _Tampered(
                verifier.expected_seq, "the log does not end with a final checkpoint (cut off?)"
            )
    except _Tampered as exc:
        result.failure, result.bad_seq = str(exc), exc.seq
    except (OSError, EOFError) as exc:
        result.failure, result.bad_seq = f"cannot read: {exc}", verifier.expected_seq
    result.sealed = verifier.last_final
    checked = key is not None and not result.unsigned
    if checked and result.last_seq is not None and result.last_signed_seq != result.last_seq:
        after = result.last_seq - (result.last_signed_seq or -1)
        result.warnings.append(f"{after} record(s) after the last signed checkpoint")
    return result
