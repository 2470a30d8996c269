"""Registry selection and option validation: one clear line naming collector and option."""

from __future__ import annotations

import doctest
import importlib

import pytest

from collectors.base import CollectorConfigError
from collectors.filesystem import FS_TYPES_EXCLUDE, case_patterns
from collectors.registry import BUILTIN, default_registry


def test_defaults_and_selection() -> None:
    reg = default_registry()
    defaults = [c.name for c in reg.defaults()]
    assert "docker" not in defaults and "textfile" not in defaults
    assert defaults[:2] == ["cpu", "stat"]
    assert [c.name for c in reg.select(only=["meminfo", "cpu"])] == ["cpu", "meminfo"]
    assert "docker" in [c.name for c in reg.select(enable=["docker"])]
    assert "systemd" not in [c.name for c in reg.select(disable=["systemd"])]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nope": {}}, "unknown collector 'nope'"),
        ({"filesystem": {"mount_point_exclude": "x"}}, "collector filesystem: unknown option"),
        ({"filesystem": {"fs_types_exclude": "("}}, "option fs_types_exclude: invalid regular"),
        ({"processes": {"top": -1}}, "option top: expected a non-negative integer"),
        ({"processes": {"top": True}}, "option top: expected a non-negative integer"),
        ({"textfile": {"scripts": {"a": 1}}}, "option scripts: expected a mapping"),
        ({"netclass": {"ignore_invalid_speed": "yes"}}, "expected true or false"),
    ],
)
def test_bad_options_are_refused_with_one_line(options: dict, message: str) -> None:
    with pytest.raises(CollectorConfigError) as err:
        default_registry().resolve_options(options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_fs_type_regex_becomes_a_case_pattern_only_when_exact() -> None:
    pattern = case_patterns(FS_TYPES_EXCLUDE)
    assert pattern is not None and "|cgroup|cgroup2|" in pattern and "autofs" in pattern
    assert case_patterns("^(ext[34]|xfs)$") is None
    assert case_patterns("nfs") is None


def test_custom_fs_type_filter_is_applied_in_the_shell_too() -> None:
    c = default_registry().get("filesystem")
    cmd = c.command(c.resolve_options({"fs_types_exclude": "^(tmpfs|nfs4?)$"}))
    assert "case $__sg_fs_t in tmpfs|nfs|nfs4) continue" in cmd
    cmd = c.command(c.resolve_options({"fs_types_exclude": "^nfs.*$"}))
    assert ") continue ;; esac" not in cmd  # not translatable: every mount is stat'ed


@pytest.mark.parametrize(
    "module",
    sorted(
        {cls.__module__ for cls in BUILTIN}
        | {
            "collectors.base",
            "collectors.sample",
            "collectors.script",
            "collectors.registry",
            "collectors.text_validator",
        }
    ),
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0
