"""Strict policy loading: every bad input is a PolicyError naming file, key path and fix."""

from __future__ import annotations

import gc
import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from benchmarks.bench_policy import large_policy_data, write_large_policy

import purposeguard as pg
from purposeguard import _load


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each YAML test runs on libyaml's C parser and on PyYAML's pure-Python fallback."""
    if request.param == "libyaml":
        if not yaml.__with_libyaml__:
            pytest.skip("PyYAML was built without libyaml")
        monkeypatch.setattr(_load, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(_load, "_Loader", yaml.SafeLoader)
    return str(request.param)


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
def test_the_three_formats_give_the_same_policy(
    tmp_path: Path, parser: str, name: str, text: str
) -> None:
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
    tmp_path: Path, parser: str, label: str, text: str, path: str, message: str
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


def test_deep_nesting_is_refused(tmp_path: Path, parser: str) -> None:
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


def test_yaml_syntax_errors_name_where_and_within_what(tmp_path: Path, parser: str) -> None:
    with pytest.raises(pg.PolicyError) as info:
        pg.load_policy(write(tmp_path, "p.yaml", "policy: x\npurposes: [a, b\n"))
    assert info.value.message.startswith("invalid YAML at line 3 column 1: ")
    assert info.value.message.endswith("; while parsing a flow sequence at line 2")


def test_control_characters_are_invalid_yaml(tmp_path: Path, parser: str) -> None:
    with pytest.raises(pg.PolicyError, match="invalid YAML") as info:
        pg.load_policy(write(tmp_path, "p.yaml", GOOD_YAML + "x: a\x07b\n"))
    assert info.value.fix == "fix the syntax"


def test_missing_file_and_bad_utf8(tmp_path: Path) -> None:
    with pytest.raises(pg.PolicyError, match="cannot read the file"):
        pg.load_policy(tmp_path / "nope.yaml")
    path = tmp_path / "p.yaml"
    path.write_bytes(b"policy: \xff\n")
    with pytest.raises(pg.PolicyError, match="not UTF-8"):
        pg.load_policy(path)


def test_libyaml_parses_when_pyyaml_has_it() -> None:
    assert (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader) is _load._Loader


def test_yaml_errors_name_the_line(tmp_path: Path, parser: str) -> None:
    line = GOOD_YAML.count("\n") + 1
    for extra, message in [
        ("x: &a 1\n", "anchors and aliases"),
        ("x: !custom 1\n", "explicit tag"),
        ("x: off\n", "boolean in YAML 1.1"),
    ]:
        with pytest.raises(pg.PolicyError, match=message) as info:
            pg.load_policy(write(tmp_path, "p.yaml", GOOD_YAML + extra))
        assert f"(line {line})" in info.value.message


def test_quoted_and_block_scalars_are_strings(tmp_path: Path, parser: str) -> None:
    text = (
        GOOD_YAML.replace("Tax operations", '"no"')
        .replace("Internal audit", "'0755'")
        .replace("Screening applicants", '"2024-09-01"')
        .replace("Recruitment selection", "|\n      yes")
    )
    policy = pg.load_policy(write(tmp_path, "p.yaml", text))
    descriptions = [policy.purposes[p].description for p in ("tax", "audit", "recruitment")]
    assert descriptions == ["no", "0755", "yes\n"]
    assert policy.purposes["recruitment.selection"].description == "2024-09-01"


def test_plain_scalars_follow_the_yaml_1_2_core_schema(parser: str) -> None:
    text = "a: 1\nb: -2.5\nc: null\nd: ~\ne:\nf: true\ng: False\nh: .5\ni: 1e3\nj: p.c_1\n"
    expected = {
        "a": 1,
        "b": -2.5,
        "c": None,
        "d": None,
        "e": None,
        "f": True,
        "g": False,
        "h": 0.5,
        "i": 1000.0,
        "j": "p.c_1",
    }
    assert expected == _load._YamlReader(text, "p.yaml").read()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Yes", "boolean in YAML 1.1"),
        ("N", "boolean in YAML 1.1"),
        ("2024-9-1", "read as a date"),
        ("2024-09-01 10:00", "read as a date"),
        ("0x1F", "read as a number"),
        ("0b101", "read as a number"),
        ("1:30", "read as a number"),
        ("1_000", "read as a number"),
        (".inf", "read as a number"),
        ("-.NaN", "read as a number"),
    ],
)
def test_plain_scalars_that_yaml_1_1_reads_differently_are_refused(
    tmp_path: Path, parser: str, value: str, message: str
) -> None:
    file = write(tmp_path, "p.yaml", GOOD_YAML.replace('"2024-09-01"', value))
    with pytest.raises(pg.PolicyError, match=message) as info:
        pg.load_policy(file)
    assert info.value.path == "version"
    assert info.value.fix.startswith("quote it")


def test_mapping_keys_must_be_strings(tmp_path: Path, parser: str) -> None:
    for key in ("1", "null", "true", "[a, b]"):
        file = write(tmp_path, "p.yaml", GOOD_YAML + f"  {key}:\n    description: x\n")
        with pytest.raises(pg.PolicyError, match="mapping keys must be strings") as info:
            pg.load_policy(file)
        assert info.value.path == "purposes"


@pytest.mark.parametrize("name", ["p.yaml", "p.json"])
def test_yaml_and_json_allow_the_same_nesting(tmp_path: Path, parser: str, name: str) -> None:
    """MAX_DEPTH mappings and lists inside each other are read (then the schema rejects the
    unknown key); one more is refused, at the key path of the one too many."""
    inside = _load.MAX_DEPTH - 1  # the top-level mapping is the first
    ok = dict(GOOD, x=json.loads("[" * inside + "]" * inside))
    deep = dict(GOOD, x=json.loads("[" * (inside + 1) + "]" * (inside + 1)))
    dump = json.dumps if name.endswith("json") else yaml.safe_dump
    with pytest.raises(pg.PolicyError, match="unknown key"):
        pg.load_policy(write(tmp_path, name, dump(ok)))
    with pytest.raises(pg.PolicyError, match="nested deeper than 16 levels") as info:
        pg.load_policy(write(tmp_path, name, dump(deep)))
    assert "x" + "[0]" * (inside) == info.value.path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("p.json", json.dumps({**GOOD, "purposes": {"hr.payroll": {"description": "x"}}})),
        ("p.toml", 'policy = "a"\nversion = "1"\n[purposes."hr.payroll"]\ndescription = "x"\n'),
        ("p.yaml", "policy: a\nversion: '1'\npurposes:\n  hr.payroll:\n    description: x\n"),
    ],
)
def test_errors_found_by_validation_name_the_file(tmp_path: Path, name: str, text: str) -> None:
    file = write(tmp_path, name, text)
    with pytest.raises(pg.PolicyError) as info:
        pg.load_policy(file)
    assert (str(file), "purposes.hr.payroll") == (info.value.file, info.value.path)
    assert str(info.value).startswith(f"{file}: purposes.hr.payroll: parent purpose 'hr'")


RICH = pg.Policy(
    id="rich",
    version="2024-09-01",
    mode="monitor",
    purposes={
        "hr": {"description": "Human resources", "mode": "enforce"},
        "hr.payroll": {"description": "Payroll", "compatible_with": ["tax"]},
        "tax": {"description": "Tax operations"},
    },
    categories={
        "my_number": {"description": "My Number", "strict": True, "purposes": ["tax"]},
        "contact": {"description": "Contact data", "retention": "30d"},
    },
    fields={
        "hr.models.Employee.my_number": {
            "collected_for": ["tax"],
            "prohibited": ["hr"],
            "category": "my_number",
            "retention": "12h",
        },
        "hr.models.Employee.email": {"collected_for": ["hr"], "mode": "monitor"},
    },
    recipients={
        "tax_office": {
            "description": "Tax office",
            "kind": "third_party",
            "categories": ["my_number"],
        }
    },
    retention={"provision_records": "3y"},
)


@pytest.mark.parametrize("name", ["p.json", "p.yaml"])
def test_a_policy_dumped_by_pydantic_loads_again(tmp_path: Path, parser: str, name: str) -> None:
    data = RICH.model_dump(mode="json")  # durations become ISO 8601, such as P1095D
    assert data["retention"]["provision_records"] == "P3Y"
    dump = json.dumps if name.endswith("json") else yaml.safe_dump
    loaded = pg.load_policy(write(tmp_path, name, dump(data)))
    assert RICH.model_dump() == loaded.model_dump()
    assert timedelta(hours=12) == loaded.fields["hr.models.Employee.my_number"].retention


def test_a_loaded_policy_remembers_its_file_through_copies(tmp_path: Path) -> None:
    file = write(tmp_path, "p.yaml", GOOD_YAML)
    policy = pg.load_policy(file)
    assert str(file) == policy.source
    assert str(file) == policy.model_copy().source
    assert str(file) == policy.model_copy(update={"version": "2"}, deep=True).source


def test_the_large_load_case_reads_the_same_from_yaml_and_json(tmp_path: Path) -> None:
    """The DESIGN §7 budget for the full size (2 s) is held by benchmarks/bench_policy.py."""
    yaml_file, json_file = write_large_policy(tmp_path, roots=10, models=100)
    from_yaml, from_json = pg.load_policy(yaml_file), pg.load_policy(json_file)
    assert from_yaml.model_dump() == from_json.model_dump()
    assert (
        from_yaml.model_dump() == pg.Policy(**large_policy_data(roots=10, models=100)).model_dump()
    )
    assert (len(from_yaml.purposes), len(from_yaml.fields)) == (100, 1000)


@pytest.mark.parametrize("enabled", [True, False])
def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path: Path, enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        pg.load_policy(write(tmp_path, "p.yaml", GOOD_YAML))
        assert enabled == gc.isenabled()
        with pytest.raises(pg.PolicyError):
            pg.load_policy(write(tmp_path, "p.yaml", GOOD_YAML + "owner: me\n"))
        assert enabled == gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
