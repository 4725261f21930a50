"""configure(): only what it is given, mode overrides, reloads that keep the last good policy."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import purposeguard as pg
from purposeguard._emitter import emitter
from purposeguard.testing import RecordingSink

POLICY = """\
policy: cfg
version: "{version}"
mode: {mode}
purposes:
  recruitment:
    description: Recruitment
  recruitment.selection:
    description: Screening
    {override}
  marketing:
    description: Marketing
"""


def write(path: Path, version: str = "1", mode: str = "enforce", override: str = "") -> Path:
    path.write_text(POLICY.format(version=version, mode=mode, override=override))
    return path


@pytest.fixture
def recorder() -> RecordingSink:
    sink = RecordingSink()
    pg.configure(audit_log=sink)
    return sink


def make_accessor() -> Any:
    @pg.accessor(collected_for=("recruitment",))
    def read() -> str:
        return "x"

    return read


pytestmark = pytest.mark.usefixtures("isolated")


def test_configure_changes_only_what_it_is_given(tmp_path: Path, recorder: RecordingSink) -> None:
    pg.configure(policy=write(tmp_path / "p.yaml"), service="hr-api")
    pg.configure(mode="monitor")
    assert pg.get_policy() is not None
    assert pg.get_policy().id == "cfg"  # type: ignore[union-attr]
    read = make_accessor()
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert read() == "x"
    assert events[0]["service"] == "hr-api"
    assert events[0]["mode"] == "monitor"


def test_mode_override_holds_across_reloads_until_none(
    tmp_path: Path, recorder: RecordingSink
) -> None:
    path = write(tmp_path / "p.yaml")
    pg.configure(policy=path, mode="monitor")
    read = make_accessor()
    write(path, version="2")
    pg.reload_policy()
    assert pg.get_policy().version == "2"  # type: ignore[union-attr]
    with pg.purpose("marketing"):
        assert read() == "x"  # still monitor
    pg.configure(mode=None)
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        read()
    changes = [r["changes"] for r in recorder.named("purposeguard.mode_change")]
    assert {"*": ["enforce", "monitor"]} in changes
    assert {"*": ["monitor", "enforce"]} in changes


def test_per_purpose_override_beats_the_default(tmp_path: Path, recorder: RecordingSink) -> None:
    pg.configure(policy=write(tmp_path / "p.yaml", override="mode: monitor"))
    read = make_accessor()
    pg.configure(
        policy=pg.testing.make_policy(
            ["recruitment", "marketing", "marketing.email"], modes={"marketing": "monitor"}
        )
    )
    with pg.purpose("marketing.email"), pg.testing.capture_violations() as events:
        assert read() == "x"  # the nearest declared ancestor's override applies
    assert events[0]["mode"] == "monitor"
    pg.configure(mode="enforce")  # the default, not the per-purpose override
    with pg.purpose("marketing"):
        assert read() == "x"


def test_accessor_mode_override(configured: pg.Policy) -> None:
    @pg.accessor(collected_for=("recruitment",), mode="monitor")
    def read() -> str:
        return "x"

    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        assert read() == "x"
    assert events[0]["mode"] == "monitor"


def test_bad_reload_keeps_the_last_good_policy(tmp_path: Path, recorder: RecordingSink) -> None:
    path = write(tmp_path / "p.yaml")
    pg.configure(policy=path)
    read = make_accessor()
    path.write_text("policy: cfg\nversion: 2\npurposes: {}\n")
    with pytest.raises(pg.PolicyError):
        pg.reload_policy()
    assert pg.get_policy().version == "1"  # type: ignore[union-attr]
    with pg.purpose("recruitment"):
        assert read() == "x"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        read()  # never allow-all
    failed = recorder.named("purposeguard.policy_reload_failed")
    assert len(failed) == 1
    assert failed[0]["source"] == str(path)
    assert "version" in failed[0]["error"]


def test_reload_without_a_file_is_a_clear_error(configured: pg.Policy) -> None:
    pg.configure(policy=pg.testing.make_policy(["a"]))
    with pytest.raises(pg.ConfigurationError, match="no policy file"):
        pg.reload_policy()


def test_mode_change_from_a_reloaded_policy_is_recorded(
    tmp_path: Path, recorder: RecordingSink
) -> None:
    path = write(tmp_path / "p.yaml")
    pg.configure(policy=path)
    write(path, version="2", mode="monitor", override="mode: enforce")
    pg.reload_policy()
    changes = recorder.named("purposeguard.mode_change")[-1]["changes"]
    assert changes == {
        "*": ["enforce", "monitor"],
        "purposes.recruitment.selection": [None, "enforce"],
    }


def test_the_audit_log_records_the_policy_configured_with_it(tmp_path: Path) -> None:
    log = tmp_path / "violations.jsonl"
    pg.configure(policy=write(tmp_path / "p.yaml"), audit_log=log, audit_key=b"k")
    assert pg.flush()
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "purposeguard.policy_loaded" in events


def test_bad_arguments_are_configuration_errors() -> None:
    with pytest.raises(pg.ConfigurationError, match="mode must be"):
        pg.configure(mode="block")  # type: ignore[arg-type]
    with pytest.raises(pg.ConfigurationError, match="storm_limit"):
        pg.configure(storm_limit=0)
    with pytest.raises(pg.ConfigurationError, match="audit_key"):
        pg.configure(audit_key=b"k")


def test_a_bad_argument_changes_nothing(configured: pg.Policy) -> None:
    other = pg.testing.make_policy(["recruitment", "marketing"], id="other")
    with pytest.raises(pg.ConfigurationError):
        pg.configure(policy=other, service="x", storm_limit=-1)
    assert pg.get_policy() is configured


def test_no_stale_decision_after_a_swap_returns() -> None:
    """Readers hammer an accessor while the policy flips between one where marketing is
    compatible with recruitment and one where it is not; after each configure() returns, the very
    next decision must follow the new policy."""
    wide = pg.testing.make_policy(
        ["recruitment", "marketing"], version="wide", compatible={"marketing": ["recruitment"]}
    )
    narrow = pg.testing.make_policy(["recruitment", "marketing"], version="narrow")
    pg.configure(policy=wide, mode="monitor")

    @pg.accessor(collected_for=("recruitment",))
    def read() -> str:
        return "x"

    stop = threading.Event()

    def hammer() -> None:  # the fast path, concurrently with the swaps
        with pg.purpose("recruitment"):
            while not stop.is_set():
                read()

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(200):
            policy = wide if i % 2 else narrow
            pg.configure(policy=policy)
            with pg.purpose("marketing"), pg.testing.capture_violations() as events:
                read()
            assert (policy is narrow) == bool(events), i
            decision = pg.check("marketing", collected_for=("recruitment",))
            assert (decision.allowed, decision.policy_version) == (policy is wide, policy.version)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert emitter.flush()
