"""systemd: unit_include/unit_exclude anchored as node_exporter's ^(?:...)$, and any pattern
that passes option validation works in parse (no "global flags" error every sweep)."""

from __future__ import annotations

from typing import Any

import pytest

from collectors.systemd import SystemdCollector

UNITS = """\
ssh.service      loaded active   running OpenSSH
Cron.SERVICE     loaded active   running cron
apt-daily.timer  loaded active   waiting apt
dev-sda1.device  loaded active   plugged disk
"""


def names(**given: Any) -> set[str]:
    c = SystemdCollector()
    options = c.resolve_options({"service_type_label": False, **given})  # validation first
    out = c.parse(UNITS, options)
    assert out.problems == [], out.problems
    return {dict(s.labels)["name"] for s in out if s.name == "node_systemd_unit_state"}


def test_a_leading_inline_flag_works() -> None:
    assert names(unit_include=r"(?i).+\.service") == {"ssh.service", "Cron.SERVICE"}
    assert names(unit_exclude=r"(?i).+\.(service|device)") == {"apt-daily.timer"}


@pytest.mark.parametrize(("include", "expected"), [
    ("ssh", set()),  # anchored: a part of the name is not a match
    (r"ssh\.service|apt", {"ssh.service"}),  # the whole alternation is anchored
    (r"ssh\.service|.+\.timer", {"ssh.service", "apt-daily.timer"}),
    (".+", {"ssh.service", "Cron.SERVICE", "apt-daily.timer"}),  # default exclude: .device
])
def test_filters_are_anchored(include: str, expected: set[str]) -> None:
    assert names(unit_include=include) == expected
