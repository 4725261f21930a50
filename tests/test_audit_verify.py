"""The verifier: a hypothesis tamper corpus is always detected, and nothing makes it crash."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from purposeguard.cli._verify import VerifyResult, verify_log
from purposeguard.sinks.audit import (
    CHECKPOINT_EVENT,
    AuditLog,
    canonical_json,
    key_id,
    line_hash,
    sign,
)

KEY = b"verify-test-key-0123456789"
Files = list[list[bytes]]


def _build(tmp: Path) -> Files:
    path = tmp / "v.jsonl"
    log = AuditLog(path, key=KEY, max_bytes=1200, checkpoint_every=4)
    for i in range(24):
        log.emit({"event": "purposeguard.violation", "purpose": "marketing", "i": i})
        if i % 5 == 4:
            assert log.flush(5)
    log.close()
    names = sorted(tmp.glob("v.jsonl*"), key=lambda p: json.loads(p.read_bytes().split()[0])["seq"])
    return [p.read_bytes().splitlines() for p in names]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return _build(tmp_path_factory.mktemp("pristine"))


def _verify(files: Files, **kw: object) -> VerifyResult:
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for n, lines in enumerate(files):
            name = Path(tmp) / f"v.jsonl.{n}"
            name.write_bytes(b"".join(line + b"\n" for line in lines))
            names.append(str(name))
        return verify_log(names, **kw)  # type: ignore[arg-type]


def _strict(files: Files) -> int:
    return _verify(files, key=KEY, expect_sealed=True, expect_genesis=True).exit_code()


def _flat(files: Files) -> list[tuple[int, int]]:
    return [(f, i) for f, lines in enumerate(files) for i in range(len(lines))]


def _copy(files: Files) -> Files:
    return [list(lines) for lines in files]


def test_the_pristine_log_verifies(pristine: Files) -> None:
    assert len(pristine) >= 3
    result = _verify(pristine, key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code(), result.sealed) == (None, 0, True)


def _rechain(files: Files, start: tuple[int, int], signer: bytes | None) -> None:
    """What an attacker without the key does: recompute every hash after an edit."""
    prev = None
    for f, i in _flat(files):
        if prev is not None and (f, i) > start:
            rec = json.loads(files[f][i])
            rec["prev_hash"] = line_hash(prev)
            if "sig" in rec:
                rec["sig"] = sign(signer, rec) if signer else None
                if signer:
                    rec["kid"] = key_id(KEY)  # claim the real key's id
            files[f][i] = canonical_json(rec)
        prev = files[f][i]


@st.composite
def tampered(draw: st.DrawFn, pristine: Files) -> Files:
    files = _copy(pristine)
    where = _flat(files)
    op = draw(
        st.sampled_from(
            [
                "delete",
                "duplicate",
                "swap",
                "edit_byte",
                "edit_field",
                "truncate",
                "cut_join",
                "forge_checkpoint",
                "rechain",
                "drop_file",
                "cut_head",
                "cut_tail",
            ]
        )
    )
    f, i = draw(st.sampled_from(where))
    line = files[f][i]
    if op == "delete":
        del files[f][i]
    elif op == "duplicate":
        g, j = draw(st.sampled_from(where))
        files[g].insert(j, line)
    elif op == "swap":
        g, j = draw(st.sampled_from(where))
        assume((g, j) != (f, i))
        files[f][i], files[g][j] = files[g][j], files[f][i]
    elif op == "edit_byte":
        pos = draw(st.integers(0, len(line) - 1))
        new = draw(st.integers(0, 255).filter(lambda b: b != line[pos]))
        files[f][i] = line[:pos] + bytes([new]) + line[pos + 1 :]
    elif op == "edit_field":
        rec = json.loads(line)
        key = draw(st.sampled_from(sorted(rec)))
        rec[key] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5)))
        assume(canonical_json(rec) != line)
        files[f][i] = canonical_json(rec)
    elif op == "truncate":  # a record cut short in the middle of the log
        files[f][i] = line[: draw(st.integers(0, len(line) - 1))]
    elif op == "cut_join":  # a record cut short and glued to the next one
        assume(i + 1 < len(files[f]))
        files[f][i : i + 2] = [line[: draw(st.integers(0, len(line) - 1))] + files[f][i + 1]]
    elif op == "forge_checkpoint":
        rec = {
            "event": CHECKPOINT_EVENT,
            "seq": i,
            "prev_hash": line_hash(line),
            "kid": key_id(KEY),
        }
        rec["sig"] = draw(st.text("0123456789abcdef", min_size=64, max_size=64))
        files[f].insert(i + 1, canonical_json(rec))
    elif op == "rechain":
        rec = json.loads(line)
        rec["purpose"] = "tampered"
        files[f][i] = canonical_json(rec)
        _rechain(files, (f, i), draw(st.sampled_from([None, b"wrong key"])))
    elif op == "drop_file":
        del files[f]
    elif op == "cut_head":
        del files[f][: draw(st.integers(1, len(files[f])))]
    elif op == "cut_tail":
        del files[f][draw(st.integers(0, len(files[f]) - 1)) :]
    assume(files != pristine)
    return files


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_every_tampering_is_detected(pristine: Files, data: st.DataObject) -> None:
    files = data.draw(tampered(pristine))
    assert _strict(files) != 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=st.binary(max_size=2000), lines=st.lists(st.binary(max_size=80), max_size=20))
def test_the_verifier_never_crashes_on_garbage(blob: bytes, lines: list[bytes]) -> None:
    for files in ([[blob]], [lines], [[b'{"seq":0,"prev_hash":"x","event":1}', *lines]]):
        result = _verify(files, key=KEY, expect_sealed=True)
        assert result.exit_code() in (0, 1, 2)
        assert _verify(files).exit_code() in (0, 1, 2)


def test_the_first_bad_seq_is_named(pristine: Files) -> None:
    files = _copy(pristine)
    n = next(n for n, line in enumerate(files[1]) if b'"purposeguard.violation"' in line)
    rec = json.loads(files[1][n])
    rec["purpose"] = "edited"
    files[1][n] = canonical_json(rec)
    result = _verify(files, key=KEY)
    assert result.bad_seq == rec["seq"] + 1
    assert "prev_hash" in (result.failure or "")


def test_a_file_with_its_head_cut_off_is_detected_alone(pristine: Files) -> None:
    assert _verify([pristine[1]], key=KEY).exit_code() == 0  # a whole file stands alone
    result = _verify([pristine[1][2:]], key=KEY)
    assert result.exit_code() == 1
    assert "header" in (result.failure or "")


def test_without_the_key_a_signed_log_is_not_verified(pristine: Files) -> None:
    result = _verify(pristine)
    assert (result.failure, result.exit_code()) == (None, 2)
    assert result.exit_code(allow_unsigned=True) == 0


def test_a_wrong_key_is_named_by_key_id(pristine: Files) -> None:
    result = _verify(pristine, key=b"not the key")
    assert result.exit_code() == 1
    assert key_id(b"not the key") in (result.failure or "")


def test_a_tail_cut_is_only_detectable_when_sealed_is_expected(pristine: Files) -> None:
    files = _copy(pristine)
    del files[-1][-3:]
    assert _verify(files, key=KEY).exit_code() == 0  # the documented limit of any append-only log
    assert _verify(files, key=KEY, expect_sealed=True).exit_code() == 1


def test_gzipped_rotated_files_and_crlf_verify(tmp_path: Path, pristine: Files) -> None:
    gz = tmp_path / "v.jsonl.1.gz"
    gz.write_bytes(gzip.compress(b"".join(line + b"\n" for line in pristine[0])))
    rest = []
    for n, lines in enumerate(pristine[1:]):
        name = tmp_path / f"v.jsonl.{n + 2}"
        name.write_bytes(b"".join(line + b"\r\n" for line in lines))
        rest.append(str(name))
    result = verify_log([*rest, str(gz)], key=KEY, expect_sealed=True, expect_genesis=True)
    assert (result.failure, result.exit_code()) == (None, 0)


def test_an_unreadable_file_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "v.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    assert verify_log([str(bad)], key=KEY).exit_code() == 1
