"""Strict policy loading: every bad input is a PolicyError naming file, key path and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import purposeguard as pg

GOOD_YAML = """\
policy: alj-privacy
version: "2024-09-01"
mode: enforce
purposes:
  recruitment:
    description: Recruitment selection
  recruitment.selection:
    description: Screening applicants
    mode: monitor
  marketing:
    description: Products, services and events
  tax:
    description: Tax operations
  audit:
    description: Internal audit
    compatible_with: [tax]
"""

GOOD = {
    "policy": "alj-privacy",
    "version": "2024-09-01",
    "mode": "enforce",
    "purposes": {
        "recruitment": {"description": "Recruitment selection"},
        "recruitment.selection": {"description": "Screening applicants", "mode": "monitor"},
        "marketing": {"description": "Products, services and events"},
        "tax": {"description": "Tax operations"},
        "audit": {"description": "Internal audit", "compatible_with": ["tax"]},
    },
}

GOOD_TOML = """\
policy = "alj-privacy"
version = "2024-09-01"
mode = "enforce"

[purposes.recruitment]
description = "Recruitment selection"

[purposes."recruitment.selection"]
description = "Screening applicants"
mode = "monitor"

[purposes.marketing]
description = "Products, services and events"

[purposes.tax]
description = "Tax operations"

[purposes.audit]
description = "Internal audit"
compatible_with = ["tax"]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.yaml", GOOD_YAML),
        ("p.yml", GOOD_YAML),
        ("p.toml", GOOD_TOML),
        ("p.json", json.dumps(GOOD)),
    ],
)
def test_the_three_formats_give_the_same_policy(tmp_path: Path, name: str, text: str) -> None:
    policy = pg.load_policy(write(tmp_path, name, text))
    built = pg.Policy(**GOOD)  # the same policy built in Python
    assert built.model_dump() == policy.model_dump()
    assert policy.source == str(tmp_path / name)
    assert policy.purposes["audit"].compatible_with == ("tax",)


def test_reference_policy_loads(alj_policy: pg.Policy) -> None:
    assert alj_policy.id == "alj-privacy"
    assert alj_policy.categories["my_number"].strict


BAD_YAML = [
    (
        "duplicate",
        GOOD_YAML + "  tax:\n    description: again\n",
        "purposes",
        "duplicate key 'tax'",
    ),
    ("unknown key", GOOD_YAML + "owner: me\n", "owner", "unknown key"),
    (
        "yaml 1.1 bool",
        GOOD_YAML.replace("Tax operations", "no"),
        "purposes.tax.description",
        "boolean in YAML 1.1",
    ),
    ("implicit date", GOOD_YAML.replace('"2024-09-01"', "2024-09-01"), "version", "read as a date"),
    ("int where str", GOOD_YAML.replace('"2024-09-01"', "3"), "version", "valid string"),
    (
        "true where str",
        GOOD_YAML.replace("Tax operations", "true"),
        "purposes.tax.description",
        "valid string",
    ),
    ("alias", GOOD_YAML + "x: &a 1\ny: *a\n", "x", "anchors and aliases"),
    ("custom tag", GOOD_YAML + "x: !python/object:os.system 1\n", "x", "explicit tag"),
    (
        "bad id",
        GOOD_YAML + "  Bad-Id:\n    description: x\n",
        "purposes.Bad-Id",
        "is not a purpose id",
    ),
    (
        "missing parent",
        GOOD_YAML + "  hr.payroll:\n    description: x\n",
        "purposes.hr.payroll",
        "parent purpose 'hr' is not declared",
    ),
    (
        "bad mode",
        GOOD_YAML.replace("mode: enforce", "mode: block"),
        "mode",
        "'enforce' or 'monitor'",
    ),
    (
        "unknown compatible",
        GOOD_YAML.replace("[tax]", "[taxes]"),
        "purposes.audit.compatible_with[0]",
        "'taxes' is not declared",
    ),
    ("octal-looking", GOOD_YAML.replace('"2024-09-01"', "0755"), "version", "read as a number"),
    ("syntax", GOOD_YAML + "  - broken: [\n", "", "invalid YAML"),
    ("two documents", GOOD_YAML + "---\npolicy: x\n", "", "more than one YAML document"),
    (
        "missing key",
        GOOD_YAML.replace('version: "2024-09-01"\n', ""),
        "version",
        "missing required key",
    ),
]


@pytest.mark.parametrize(
    ("label", "text", "path", "message"), BAD_YAML, ids=[b[0] for b in BAD_YAML]
)
def test_bad_yaml_is_a_policy_error(
    tmp_path: Path, label: str, text: str, path: str, message: str
) -> None:
    file = write(tmp_path, "policy.yaml", text)
    with pytest.raises(pg.PolicyError) as info:
        pg.load_policy(file)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.file == str(file)
    assert path == error.path
    assert message in str(error)
    assert error.fix
    assert str(file) in str(error)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    nested = "x: " + "[" * 40 + "]" * 40 + "\n"
    with pytest.raises(pg.PolicyError, match="nested deeper"):
        pg.load_policy(write(tmp_path, "p.yaml", GOOD_YAML + nested))
    with pytest.raises(pg.PolicyError, match="nested deeper"):
        pg.load_policy(write(tmp_path, "p.json", "[" * 100_000 + "]" * 100_000))


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path, "p.yaml", GOOD_YAML + "#" * 2000 + "\n")
    with pytest.raises(pg.PolicyError, match="larger than 1000 bytes") as info:
        pg.load_policy(file, max_bytes=1000)
    assert "max_bytes" in info.value.fix


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.json", '{"policy": "a", "policy": "b"}', "duplicate key 'policy'"),
        ("p.json", '{"policy": NaN}', "NaN is not allowed"),
        ("p.json", "{", "invalid JSON"),
        ("p.toml", 'policy = "a"\npolicy = "b"\n', "invalid TOML"),
        ("p.toml", GOOD_TOML.replace('"2024-09-01"', "2024-09-01"), "valid string"),
        ("p.txt", "policy: a", "unsupported policy file type"),
        ("p.yaml", "- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_bad_json_and_toml(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(pg.PolicyError, match=message):
        pg.load_policy(write(tmp_path, name, text))


def test_missing_file_and_bad_utf8(tmp_path: Path) -> None:
    with pytest.raises(pg.PolicyError, match="cannot read the file"):
        pg.load_policy(tmp_path / "nope.yaml")
    path = tmp_path / "p.yaml"
    path.write_bytes(b"policy: \xff\n")
    with pytest.raises(pg.PolicyError, match="not UTF-8"):
        pg.load_policy(path)


def test_python_construction_raises_policy_error() -> None:
    with pytest.raises(pg.PolicyError, match=r"purposes\.a\.b: parent purpose 'a'"):
        pg.Policy(id="x", version="1", purposes={"a.b": pg.Purpose(description="d")})
    with pytest.raises(pg.PolicyError, match="compatible with itself"):
        pg.Policy(
            id="x", version="1", purposes={"a": {"description": "d", "compatible_with": ["a"]}}
        )


def test_policy_is_immutable(alj_policy: pg.Policy) -> None:
    with pytest.raises(Exception, match="frozen"):
        alj_policy.version = "2"  # type: ignore[misc]


def test_policy_error_pickles() -> None:
    import pickle

    error = pg.PolicyError("bad", file="f.yaml", path="a.b", fix="do x")
    again = pickle.loads(pickle.dumps(error))
    assert (again.file, again.path, again.fix, str(again)) == ("f.yaml", "a.b", "do x", str(error))


def test_categories_recipients_and_durations_are_validated() -> None:
    base = {"id": "x", "version": "1", "purposes": {"tax": {"description": "t"}}}
    with pytest.raises(pg.PolicyError, match="strict category needs"):
        pg.Policy(**base, categories={"mn": {"description": "d", "strict": True}})
    with pytest.raises(pg.PolicyError, match="category 'mn' is not declared"):
        pg.Policy(
            **base,
            recipients={"r": {"description": "d", "kind": "third_party", "categories": ["mn"]}},
        )
    with pytest.raises(pg.PolicyError, match="duration"):
        pg.Policy(**base, retention={"provision_records": "3 years"})
