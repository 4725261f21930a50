"""The one field decision: for random policies, records (consent, category, collection time) and
subject states, every channel agrees with the reference decision (``_decide.decide_use``).

Channels: attribute reads of a pydantic model and of a dataclass, ``model_dump`` and
``model_dump_json``, ``dataclasses.asdict``, the dataclass's ``==``, a comparison with (and a
hash of) the storage that holds the values, monitor-mode reads (the recorded reason),
``pg.check(field=)``, ``pg.check_subject(field=)``, ``pg.purposes_of`` and the purpose notice's
``usable_for``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import create_model

import purposeguard as pg
from purposeguard._decide import Rule, decide_use
from purposeguard._ids import ancestors, is_within

UNIVERSE = ("a", "a.x", "a.y", "a.x.q", "b", "b.z", "c", "d")
NOW = datetime(2026, 6, 1, tzinfo=UTC)
US = 1_000_000
DAY_US = 86_400 * US
VALUE = "canary-fields-7d1e"


def epoch_us(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def ids_of(draw: st.DrawFn, ids: list[str], min_size: int = 0, max_size: int = 2) -> list[str]:
    return sorted(set(draw(st.lists(st.sampled_from(ids), min_size=min_size, max_size=max_size))))


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    chosen = set(ids_of(draw, list(UNIVERSE), min_size=1, max_size=len(UNIVERSE)))
    for pid in list(chosen):
        chosen.update(ancestors(pid))
    ids = sorted(chosen)
    compatible: dict[str, list[str]] = {}
    for x in ids:
        others = [y for y in ids if y != x]
        if others and draw(st.integers(0, 3)) == 0:
            compatible[x] = ids_of(draw, others, min_size=1)
    kind = draw(st.sampled_from(["none", "plain", "strict"]))
    strict = ids_of(draw, ids, min_size=1) if kind == "strict" else None
    # a strict category's fields may be tagged only within its closed list
    taggable = [p for p in ids if strict is None or any(is_within(p, s) for s in strict)]
    allowed = ids_of(draw, taggable, min_size=1, max_size=3)
    prohibited = ids_of(draw, ids)
    policy_tag = None
    if draw(st.booleans()):
        policy_tag = (ids_of(draw, taggable, min_size=1), ids_of(draw, ids, max_size=1))
    retention_days = draw(st.sampled_from([None, 10]))
    collected_days_ago = draw(st.sampled_from([None, 1, 9, 10, 30]))
    return {
        "ids": ids,
        "compatible": compatible,
        "category": {"none": None, "plain": "plain", "strict": "mn"}[kind],
        "strict": strict,
        "allowed": allowed,
        "prohibited": prohibited,
        "policy_tag": policy_tag,
        "retention_days": retention_days,
        "collected_days_ago": collected_days_ago if retention_days else None,
        "consent": ids_of(draw, [*ids, "zz"]),
        "subject": draw(st.sampled_from(["s1", None])),
        "subject_consents": ids_of(draw, ids),
        "suspended": draw(st.sampled_from([[], ["*"], *([p] for p in ids)])),
        "purpose": draw(st.sampled_from([*ids, "zz.unknown", None])),
    }


def build_policy(s: dict[str, Any], paths: list[str]) -> pg.Policy:
    categories: dict[str, Any] = {"plain": pg.Category(description="plain")}
    if s["strict"] is not None:
        categories["mn"] = pg.Category(description="strict", strict=True, purposes=s["strict"])
    fields = {}
    if s["policy_tag"] is not None:
        allowed, prohibited = s["policy_tag"]
        fields = {path: pg.FieldTag(collected_for=allowed, prohibited=prohibited) for path in paths}
    base = pg.testing.make_policy(s["ids"], compatible=s["compatible"])
    return pg.Policy(
        id="fields", version="1", purposes=base.purposes, categories=categories, fields=fields
    )


def reference(
    s: dict[str, Any], purpose: str | None, *, record: bool, subject: bool, now: bool
) -> Rule:
    """The reference decision for one channel: with the record's own consent (``record``), the
    registry's state of its subject (``subject``), the clock (``now``), or without them."""
    tags = [(s["allowed"], s["prohibited"])]
    if s["policy_tag"] is not None:
        tags.append(s["policy_tag"])
    known = subject and s["subject"] is not None
    collected = s["collected_days_ago"]
    return decide_use(
        purpose,
        tags,
        set(s["ids"]),
        s["compatible"],
        strict=s["strict"],
        category="mn" if s["strict"] is not None else None,
        consent=s["consent"] if record else (),
        subject_consents=s["subject_consents"] if known else (),
        suspended=s["suspended"] if known else (),
        retention=s["retention_days"] * DAY_US if s["retention_days"] else None,
        collected_at=None if collected is None else epoch_us(NOW) - collected * DAY_US,
        now=epoch_us(NOW) if now else None,
    )


def outcome(use: Callable[[], object]) -> str:
    """``allow`` or the violation's reason."""
    try:
        use()
    except pg.PurposeViolation as exc:
        return exc.reason
    return "allow"


def expected(rule: Rule) -> str:
    return "allow" if rule.kind in ("allowed", "consent") else rule.kind


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(s=scenarios())
def test_every_channel_agrees_with_the_reference_decision(s: dict[str, Any]) -> None:
    model_path = f"{__name__}.Record"
    data_path = f"{__name__}.Data"
    with pg.testing.isolated_guards(), pg.testing.retention_clock(lambda: NOW):
        pg.configure(policy=build_policy(s, [f"{model_path}.email", f"{data_path}.email"]))
        registry = pg.Registry(refresh_interval=None)
        pg.configure(registry=registry)
        if s["subject_consents"]:
            registry.grant_consent("s1", purposes=s["subject_consents"])
        if s["suspended"] == ["*"]:
            registry.suspend_use("s1")
        elif s["suspended"]:
            registry.suspend_use("s1", s["suspended"])
        marker = pg.CollectedFor(
            *s["allowed"],
            prohibited=s["prohibited"],
            category=s["category"],
            retention=f"{s['retention_days']}d" if s["retention_days"] else None,
        )
        record_fields: dict[str, Any] = {
            "subject": (Annotated[str | None, pg.SubjectId], None),
            "consent": (Annotated[frozenset[str], pg.Consent], frozenset()),
            "email": (Annotated[str, marker], ...),
        }
        collected = s["collected_days_ago"]
        at = None if collected is None else NOW - timedelta(days=collected)
        if s["retention_days"]:
            record_fields["collected"] = (Annotated[datetime | None, pg.CollectedAt], None)
        Model = create_model(
            "Record", __base__=pg.GuardedModel, __module__=__name__, **record_fields
        )
        Model.__qualname__ = "Record"  # as if defined at module level, where the path points
        values: dict[str, Any] = {"subject": s["subject"], "consent": frozenset(s["consent"])}
        values["email"] = VALUE
        if s["retention_days"]:
            values["collected"] = at
        record = Model(**values)
        dataclass_fields = [
            (name, annotation, dataclasses.field(default=default))
            for name, (annotation, default) in record_fields.items()
            if name != "email"
        ]
        Data = dataclasses.make_dataclass(
            "Data", [("email", record_fields["email"][0]), *dataclass_fields]
        )
        Data.__module__ = __name__
        pg.guarded(Data)
        data = Data(**values)
        twin = Data(**values)

        with_record = expected(reference(s, s["purpose"], record=True, subject=True, now=True))
        with pg.purpose(s["purpose"]) if s["purpose"] else _nothing():
            channels = {
                "model attribute": outcome(lambda: record.email),
                "model_dump": outcome(record.model_dump),
                "model_dump_json": outcome(record.model_dump_json),
                "dataclass attribute": outcome(lambda: data.email),
                "asdict": outcome(lambda: dataclasses.asdict(data)),
                "dataclass ==": outcome(lambda: data == twin),
                # the storage itself, compared with a guess: checked with the record's facts
                "model storage ==": outcome(lambda: vars(record)["email"] == VALUE),
                "dataclass storage ==": outcome(lambda: vars(data)["__purposeguard__"] == VALUE),
                "model storage hash": outcome(lambda: hash(vars(record)["email"])),
            }
        assert channels == dict.fromkeys(channels, with_record), s

        pg.configure(mode="monitor")
        scope = pg.purpose(s["purpose"]) if s["purpose"] else _nothing()
        with pg.testing.capture_violations() as events, scope:
            assert record.email == VALUE
        reasons = [e["reason"] for e in events]
        assert reasons == ([] if with_record == "allow" else [with_record]), s
        pg.configure(mode=None)

        question = expected(reference(s, s["purpose"], record=False, subject=False, now=False))
        for owner in (Model, Data):
            assert expected(pg.check(s["purpose"], field=(owner, "email")).rule) == question, s
        about_subject = pg.check_subject(
            s["purpose"], subject=s["subject"], field=(Model, "email"), collected_at=at
        )
        subject_rule = reference(s, s["purpose"], record=False, subject=True, now=at is not None)
        assert expected(about_subject.rule) == expected(subject_rule), s

        usable = {
            p
            for p in s["ids"]
            if expected(reference(s, p, record=False, subject=False, now=False)) == "allow"
        }
        assert pg.purposes_of(Model, "email") == usable, s
        (entry,) = [f for f in pg.purpose_notice(Model).fields if f.field == "email"]
        assert set(entry.usable_for) == usable, s
        registry.close()
        pg.configure(registry=None, policy=None)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("channel", ["attribute", "check", "check_subject"])
def test_a_purpose_the_tags_allow_outside_a_strict_list_is_strict_category(
    channel: str, isolated: None
) -> None:
    policy = pg.testing.make_policy(["tax.withholding", "audit"], compatible={"audit": ["tax"]})
    policy = pg.Policy(
        id="p",
        version="1",
        purposes=policy.purposes,
        categories={"mn": pg.Category(description="My Number", strict=True, purposes=["tax"])},
    )
    pg.configure(policy=policy)

    class Employee(pg.GuardedModel):
        my_number: Annotated[str, pg.CollectedFor("tax", category="mn")]

    employee = Employee(my_number=VALUE)
    if channel == "attribute":
        with pg.purpose("audit"), pytest.raises(pg.PurposeViolation) as info:
            _ = employee.my_number
        reason = info.value.reason
    elif channel == "check":
        reason = pg.check("audit", field=(Employee, "my_number")).reason
    else:
        reason = pg.check_subject("audit", subject="e1", field=(Employee, "my_number")).reason
    assert reason == "strict_category"
