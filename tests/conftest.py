"""Shared fixtures: a clean purposeguard per test, and the real OpenTelemetry SDK in memory.

OpenTelemetry's global providers can be set once per process, so they are set here, at import,
with in-memory exporters that each test clears.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import purposeguard as pg

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CANARY = "canary-7f3a9e-secret@example.com"

_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(_SPANS))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))

# The app, not the library, configures logging: in tests, render to strings and print nothing.
structlog.configure(
    processors=[structlog.processors.JSONRenderer()],
    logger_factory=structlog.ReturnLoggerFactory(),
)


@pytest.fixture(autouse=True)
def _clean_purposeguard() -> Iterator[None]:
    pg.testing.reset()
    yield
    pg.testing.reset()


@pytest.fixture
def isolated() -> Iterator[None]:
    """Only guards defined in this test follow the policies it configures."""
    with pg.testing.isolated_guards():
        yield


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The in-memory span exporter of the real OTel SDK, cleared for this test."""
    _SPANS.clear()
    return _SPANS


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """The in-memory metric reader of the real OTel SDK (counters are cumulative)."""
    return _METRICS


@pytest.fixture
def alj_policy() -> pg.Policy:
    """The reference customer's policy, from examples/policy.yaml."""
    return pg.load_policy(EXAMPLES / "policy.yaml")


@pytest.fixture
def configured(alj_policy: pg.Policy) -> pg.Policy:
    """The reference policy, configured in enforce mode."""
    pg.configure(policy=alj_policy)
    return alj_policy


def with_policy(policy: pg.Policy, **changes: Any) -> pg.Policy:
    """``policy`` with some top-level keys changed (mappings are merged into the old ones)."""
    data = policy.model_dump()
    data["policy"] = data.pop("id")
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return pg.Policy(**data)


def counter_value(reader: InMemoryMetricReader, name: str, **attributes: str) -> int:
    """The cumulative value of counter ``name`` for points whose attributes include these."""
    data = reader.get_metrics_data()
    total = 0
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    if all(point.attributes.get(k) == v for k, v in attributes.items()):
                        total += int(point.value)
    return total
