"""A GuardedModel whose annotations cannot be resolved when the class is created is guarded as
soon as pydantic completes it, never silently left unguarded."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

import purposeguard as pg
from purposeguard.models import Tag

pytestmark = pytest.mark.usefixtures("isolated", "configured")


def _later_alias() -> type[Any]:
    namespace: dict[str, Any] = {"pg": pg, "Annotated": Annotated, "__name__": "forward_refs"}
    exec(  # the alias is defined after the class, as it may be in a real module
        "from __future__ import annotations\n"
        "class Applicant(pg.GuardedModel):\n"
        "    email: Email\n"
        "Email = Annotated[str, pg.CollectedFor('recruitment')]\n",
        namespace,
    )
    model: type[Any] = namespace["Applicant"]
    return model


def test_alias_defined_after_the_class_is_guarded_once_resolved() -> None:
    model = _later_alias()
    assert not model.__pydantic_complete__
    model.model_rebuild(_types_namespace={"Email": Annotated[str, pg.CollectedFor("recruitment")]})
    record = model(email="hanako@example.com")
    assert "hanako" not in repr(record)
    with pg.purpose("recruitment"):
        assert record.email == "hanako@example.com"
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = record.email
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        record.model_dump()
    assert dict(model.__purposeguard_fields__) == {"email": Tag.of(["recruitment"])}


def test_nested_model_defined_later() -> None:
    class Outer(pg.GuardedModel):
        inner: Inner | None = None
        email: Annotated[str, pg.CollectedFor("recruitment")]

    class Inner(pg.GuardedModel):
        phone: Annotated[str, pg.CollectedFor("recruitment")]

    Outer.model_rebuild(_types_namespace={"Inner": Inner})
    record = Outer(email="hanako@example.com", inner=Inner(phone="090-0000-0000"))
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = record.email
    with pg.purpose("marketing"), pytest.raises(pg.PurposeViolation):
        _ = record.inner.phone  # type: ignore[union-attr]
    with pg.purpose("recruitment.selection"):
        assert record.model_dump()["inner"] == {"phone": "090-0000-0000"}
