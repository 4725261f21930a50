"""``purposeguard.serialize`` as a type checker sees it: checked by mypy (strict), never run."""

from __future__ import annotations

from typing import Any, assert_type

from purposeguard.serialize import json_default, to_builtins

assert_type(to_builtins([1, 2]), Any)
assert_type(to_builtins({"a": 1}, mode="json"), Any)
to_builtins([1], mode="yaml")  # type: ignore[arg-type]
assert_type(json_default({1}), Any)
