"""Violation events: the schema, OpenTelemetry, structlog, storm control, nothing dropped silently."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs
from tests.conftest import CANARY, counter_value

import purposeguard as pg
from purposeguard._emitter import emitter
from purposeguard._events import VIOLATION_KEYS


def guarded() -> Any:
    @pg.accessor(collected_for=("recruitment",))
    def read_email(applicant: dict[str, str]) -> str:
        return applicant["email"]

    return read_email


def test_event_has_exactly_the_schema_keys(configured: pg.Policy) -> None:
    read = guarded()
    pg.configure(mode="monitor", service="hr-api")
    with pg.purpose("marketing"), pg.testing.capture_violations() as events:
        read({"email": CANARY})
    line = __import__("inspect").currentframe().f_lineno - 1  # type: ignore[union-attr]
    (event,) = events
    assert set(VIOLATION_KEYS) == set(event)
    assert {
        "event": "purposeguard.violation",
        "schema": "purposeguard.violation/1",
        "decision": "deny",
        "mode": "monitor",
        "enforced": False,
        "reason": "not_allowed",
        "purpose": "marketing",
        "allowed": ["recruitment"],
        "prohibited": [],
        "field": None,
        "channel": "accessor",
        "policy_id": "alj-privacy",
        "policy_version": "2024-09-01",
        "subject": None,
        "service": "hr-api",
    }.items() <= event.items()
    assert event["accessor"].endswith("guarded.<locals>.read_email")
    assert event["code"] == f"{__file__}:{line}"
    assert event["ts"].endswith("Z")
    json.dumps(event)  # flat and JSON-able


def test_span_event_and_counter_in_the_real_otel_sdk(
    configured: pg.Policy, spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader
) -> None:
    read = guarded()
    before = counter_value(metric_reader, "purposeguard.decisions", decision="deny", mode="enforce")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span, pg.testing.capture_violations() as events:
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            read({"email": CANARY})
        ctx = span.get_span_context()
    (finished,) = spans.get_finished_spans()
    (span_event,) = finished.events
    assert span_event.name == "purposeguard.violation"
    attributes = dict(span_event.attributes or {})
    assert attributes["purposeguard.purpose"] == "marketing"
    assert attributes["purposeguard.reason"] == "not_allowed"
    assert tuple(attributes["purposeguard.allowed"]) == ("recruitment",)
    assert events[0]["trace_id"] == format(ctx.trace_id, "032x")
    assert events[0]["span_id"] == format(ctx.span_id, "016x")
    after = counter_value(metric_reader, "purposeguard.decisions", decision="deny", mode="enforce")
    assert after == before + 1
    assert CANARY not in repr(finished.to_json())


def test_allow_path_records_nothing(
    configured: pg.Policy, spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader
) -> None:
    read = guarded()
    pg.flush()  # the policy_loaded record of the fixture is not part of this test
    before = counter_value(metric_reader, "purposeguard.decisions")
    with (
        trace.get_tracer("test").start_as_current_span("request"),
        pg.purpose("recruitment"),
        pg.testing.capture_violations() as events,
        structlog.testing.capture_logs() as logs,
    ):
        read({"email": CANARY})
        pg.flush()
    assert (events, logs) == ([], [])
    assert spans.get_finished_spans()[0].events == ()
    assert counter_value(metric_reader, "purposeguard.decisions") == before


def test_structlog_gets_the_event_and_never_the_value(configured: pg.Policy) -> None:
    read = guarded()
    pg.configure(mode="monitor")
    with structlog.testing.capture_logs() as logs:
        with pg.purpose("marketing"):
            assert read({"email": CANARY}) == CANARY
        pg.configure(mode="enforce")
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as info:
            read({"email": CANARY})
        assert pg.flush()
    violations = [e for e in logs if e["event"] == "purposeguard.violation"]
    assert [e["enforced"] for e in violations] == [False, True]
    assert violations[0]["log_level"] == "warning"
    assert any(e["event"] == "purposeguard.mode_change" for e in logs)
    assert CANARY not in json.dumps(logs, default=str)
    assert CANARY not in str(info.value)


def test_storm_of_identical_violations_is_summarized_not_dropped(configured: pg.Policy) -> None:
    read = guarded()
    pg.configure(mode="monitor", storm_limit=5, storm_window=60)
    with structlog.testing.capture_logs() as logs, pg.testing.capture_violations() as events:
        with pg.purpose("marketing"):
            for _ in range(1000):
                read({"email": CANARY})
        assert pg.flush()
    assert len(events) == 1000  # captures and span events are never storm-controlled
    lines = [e for e in logs if e["event"] == "purposeguard.violation"]
    summaries = [e for e in logs if e["event"] == "purposeguard.violation_summary"]
    assert len(lines) == 5
    assert [s["count"] for s in summaries] == [995]
    assert summaries[0]["purpose"] == "marketing"
    assert summaries[0]["accessor"] == lines[0]["accessor"]


def test_distinct_violations_are_not_merged(configured: pg.Policy) -> None:
    read = guarded()
    pg.configure(mode="monitor", storm_limit=1, storm_window=60)
    with structlog.testing.capture_logs() as logs:
        for purpose in ("marketing", "inquiry", "security"):
            with pg.purpose(purpose):
                read({"email": CANARY})
        pg.flush()
    assert len([e for e in logs if e["event"] == "purposeguard.violation"]) == 3


def test_buffer_overflow_is_counted_and_reported(
    configured: pg.Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = guarded()
    pg.configure(mode="monitor", buffer_size=10, storm_limit=10_000)
    deliver = emitter._log

    def slow(batch: list[tuple[str, dict[str, Any]]]) -> None:
        time.sleep(0.05)
        deliver(batch)

    monkeypatch.setattr(emitter, "_log", slow)
    with structlog.testing.capture_logs() as logs:
        _read_many(read)
        assert pg.flush()
    written = len([e for e in logs if e["event"] == "purposeguard.violation"])
    dropped = sum(e["count"] for e in logs if e["event"] == "purposeguard.dropped")
    assert written + dropped == 100
    assert dropped > 0


def _read_many(read: Any) -> None:
    with pg.purpose("marketing"):
        for _ in range(100):
            read({"email": CANARY})


def test_capture_sees_violations_from_other_threads(configured: pg.Policy) -> None:
    read = guarded()
    pg.configure(mode="monitor")
    with pg.testing.capture_violations() as events:
        t = threading.Thread(target=lambda: _read_many(read))
        t.start()
        t.join()
    assert len(events) == 100


def test_sink_failure_never_changes_a_decision(configured: pg.Policy) -> None:
    class Broken:
        def emit(self, record: dict[str, Any]) -> None:
            raise OSError("disk full")

        def flush(self, timeout: float | None = None) -> bool:
            raise OSError("disk full")

        def close(self) -> None:
            raise OSError("disk full")

    pg.configure(audit_log=Broken())
    read = guarded()
    with pg.purpose("recruitment"):
        assert read({"email": "x"}) == "x"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        read({"email": "x"})
    assert pg.flush() is False


class _Failing:
    """A sink that fails every way a sink can."""

    def __init__(self) -> None:
        self.calls = 0

    def emit(self, record: dict[str, Any]) -> None:
        self.calls += 1
        raise OSError("disk on fire")

    def flush(self, timeout: float | None = None) -> bool:
        raise OSError("disk on fire")

    def close(self) -> None:
        raise OSError("disk on fire")


def test_a_failing_sink_is_logged_once_per_window_and_never_changes_a_decision(
    configured: pg.Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import purposeguard._emitter as emitter_module

    monkeypatch.setattr(emitter_module, "_failures", {})
    sink = _Failing()

    @pg.accessor(collected_for=("recruitment",))
    def load() -> str:
        return "sheet"

    with capture_logs() as logs:
        pg.configure(audit_log=sink, mode="monitor")  # its mode change fails to reach the sink
        for _ in range(5):
            with pg.purpose("marketing"):
                assert load() == "sheet"  # monitor: let through, whatever the sink does
        pg.configure(mode="enforce")
        with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
            load()  # enforce: refused, whatever the sink does
        assert pg.flush() is False  # a failing sink is a failed flush
    failures = [line for line in logs if line["event"] == "purposeguard.sink_failed"]
    assert sink.calls >= 6
    assert [(f["sink"], f["failures"]) for f in failures] == [("_Failing", 1)]
    assert "disk on fire" not in str(failures)  # the error's type, never its message
    pg.configure(audit_log=None)
