from __future__ import annotations

import pytest

import purposeguard as pg


def test_allowed_and_denied_accessor(configured: pg.Policy) -> None:
    @pg.accessor(collected_for=("recruitment",))
    def load(applicant_id: str) -> str:
        return applicant_id

    with pg.purpose("recruitment.selection"):
        assert load("a1") == "a1"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation) as info:
        load("a1")
    assert info.value.reason == "not_allowed"
