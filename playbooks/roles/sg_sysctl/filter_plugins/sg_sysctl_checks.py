"""The sg_sysctl role's variable checks (``tasks/check.yml``), as a filter.

``sysctl_profiles | sg_sysctl_var_errors(sysctl_profile, sysctl_extra)`` is every error in
the three variables, each naming the variable and what it was given, joined with "; " (""
when there are none). Python rather than a Jinja expression: Ansible compiles a template
anew in every worker process, once per host and task, and the same checks written in Jinja
cost about 40 ms of the controller's CPU per host just to compile.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

SYSCTL_NAME = re.compile(r"^[^ \t\n=]+$")


def got(value: Any) -> str:
    """What was given, as the messages show it."""
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, Mapping):
        return "the mapping " + json.dumps(value, default=str)
    if value is None:
        return "null"
    return json.dumps(value, default=str)


def sysctl_var_errors(profiles: Any, profile: Any, extra: Any) -> str:
    errors: list[str] = []
    settings: list[tuple[str, Mapping[Any, Any]]] = []
    if not isinstance(profiles, Mapping):
        errors.append("sysctl_profiles: expected a mapping of profile name -> mapping of key: "
                      "value (as in roles/sg_sysctl/defaults/main.yml), got " + got(profiles))
    else:
        for name, values in profiles.items():
            if not isinstance(values, Mapping):
                errors.append(f"sysctl_profiles: profile {name}: expected a mapping of key: "
                              f"value, got {got(values)}")
            else:
                settings.append((f"sysctl_profiles: profile {name}", values))
        known = ", ".join(str(p) for p in profiles)
        if not isinstance(profile, str):
            errors.append(f"sysctl_profile: expected the name of one profile ({known}), got "
                          + got(profile))
        elif profile not in profiles:
            errors.append(f"sysctl_profile: unknown profile {profile} (known: {known})")
    if not isinstance(extra, Mapping):
        hint = (" (-e name=value always gives a string: write -e "
                "'{\"sysctl_extra\": {\"vm.swappiness\": 10}}')") if isinstance(extra, str) else ""
        errors.append('sysctl_extra: expected a mapping of key: value such as '
                      '{"vm.swappiness": 10}, got ' + got(extra) + hint)
    else:
        settings.append(("sysctl_extra", extra))
    for where, values in settings:
        for key, value in values.items():
            if not isinstance(key, str) or not SYSCTL_NAME.match(key):
                errors.append(f"{where}: {got(key)} is not a sysctl name such as vm.swappiness")
            elif isinstance(value, bool) or not isinstance(value, (numbers.Number, str)) or (
                    isinstance(value, str) and "\n" in value):
                errors.append(f'{where}: {key}: expected a number or a string such as '
                              f'"1024 65535", got {got(value)}')
    return "; ".join(errors)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., str]]:
        return {"sg_sysctl_var_errors": sysctl_var_errors}
