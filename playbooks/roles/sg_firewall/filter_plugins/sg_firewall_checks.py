"""The sg_firewall role's variable checks (``tasks/check.yml``), as a filter.

``firewall_allowed_ports | sg_firewall_var_errors(vars)`` (``vars``: a mapping of the role's
other variables by name) is every error in the role's variables, each naming the variable
and what it was given, joined with "; " ("" when there are none). Python rather than a
Jinja expression: Ansible compiles a template anew in every worker process, once per host
and task, and the same checks written in Jinja cost about 100 ms of the controller's CPU
per host just to compile.

Mind that a string is a sequence: ``-e firewall_allowed_ports=443`` is the string '443',
which a loop reads as the ports '4', '4', '3'. Lists are required where lists are
documented, and each port entry must have a documented shape.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

PROTOS = ["tcp", "udp", "sctp", "dccp"]
SHAPE = ('"80/tcp", "53/udp", "8000-8100/tcp" or {port: 5432, proto: tcp, sources: '
         f"[10.0.0.0/8]}} (proto: {', '.join(PROTOS)})")
POLICIES = [("firewall_input_policy", ["drop", "accept"]),
            ("firewall_forward_policy", ["drop", "accept"]),
            ("firewall_output_policy", ["drop", "accept"]),
            ("firewall_conflicts", ["refuse", "ignore"])]
LISTS = [("firewall_allowed_ports", '["443/tcp"]'),
         ("firewall_allowed_sources", '["10.0.0.0/8"]'),
         ("firewall_denied_sources", '["192.0.2.0/24"]'),
         ("firewall_extra_input_rules", '["ip saddr 10.0.0.0/8 tcp dport 9100 accept"]')]
RANGE = re.compile(r"^[0-9]+(-[0-9]+)?$")
ENTRY = re.compile(r"^[0-9]+(-[0-9]+)?(/(" + "|".join(PROTOS) + r"))?$")
NUMERIC = re.compile(r"^[0-9]+(-[0-9]+)?(/|$)")


def got(value: Any) -> str:
    """What was given, as the messages show it."""
    if isinstance(value, str):
        return f"the string '{value}'"
    if isinstance(value, Mapping):
        return "the mapping " + json.dumps(value, default=str)
    if value is None:
        return "null"
    return json.dumps(value, default=str)


def _is_list(value: Any) -> bool:
    """A list as the role means it: a sequence that is neither a string nor a mapping."""
    if isinstance(value, (str, Mapping)):
        return False
    try:
        len(value)
        value.__getitem__  # noqa: B018 (Jinja's `sequence` test)
    except Exception:
        return False
    return True


def _scalar(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (str, numbers.Number))


def _port_errors(item: Any) -> list[str]:
    errors: list[str] = []
    port = item.get("port", "") if isinstance(item, Mapping) else item
    text = str(port)
    if isinstance(item, Mapping):
        sources = item.get("sources", [])
        unknown = [str(k) for k in item if k not in ("port", "proto", "sources")]
        if unknown:
            errors.append(f"firewall_allowed_ports: {got(item)}: unknown key "
                          f"{', '.join(unknown)} (known: port, proto, sources)")
        elif "port" not in item:
            errors.append(f"firewall_allowed_ports: {got(item)}: no port (such as "
                          "{port: 5432, proto: tcp})")
        elif not _scalar(port) or not RANGE.match(text):
            errors.append(f"firewall_allowed_ports: {got(item)}: port must be a number or a "
                          f"range such as 8000-8100, got {got(port)}")
        elif item.get("proto", "tcp") not in PROTOS:
            errors.append(f"firewall_allowed_ports: {got(item)}: proto must be one of "
                          f"{', '.join(PROTOS)}, got {got(item.get('proto'))}")
        elif not _is_list(sources):
            errors.append(f"firewall_allowed_ports: sources of port {text}: expected a list "
                          f'such as ["10.0.0.0/8"], got {got(sources)}')
        else:
            errors += [f"firewall_allowed_ports: sources of port {text}: expected strings in "
                       f"the list, got {got(s)}" for s in sources if not isinstance(s, str)]
    elif not _scalar(item) or not ENTRY.match(text):
        errors.append(f"firewall_allowed_ports: expected entries such as {SHAPE}, "
                      f"got {got(item)}")
    if NUMERIC.match(text):
        bounds = text.split("/")[0].split("-")
        low, high = int(bounds[0]), int(bounds[-1])
        if low < 1 or high > 65535:
            errors.append(f"firewall_allowed_ports: port {text.split('/')[0]} is out of the "
                          "range 1-65535")
        elif low > high:
            errors.append(f"firewall_allowed_ports: port range {text.split('/')[0]} goes "
                          f"backwards (write {high}-{low})")
    return errors


def firewall_var_errors(ports: Any, given: Mapping[str, Any]) -> str:
    errors: list[str] = []
    for name, known in POLICIES:
        value = given[name]
        if not isinstance(value, str) or value not in known:
            errors.append(f"{name}: expected {' or '.join(known)}, got {got(value)}")
    for name, example in LISTS:
        value = ports if name == "firewall_allowed_ports" else given[name]
        if not _is_list(value):
            hint = (f" (-e name=value always gives a string: write -e "
                    f"'{{\"{name}\": {example}}}')") if isinstance(value, str) else ""
            errors.append(f"{name}: expected a list such as {example}, got {got(value)}{hint}")
        elif name != "firewall_allowed_ports":
            errors += [f"{name}: expected strings in the list, got {got(item)}"
                       for item in value if not isinstance(item, str)]
    for item in ports if _is_list(ports) else []:
        errors += _port_errors(item)
    return "; ".join(errors)


class FilterModule:
    def filters(self) -> dict[str, Callable[..., str]]:
        return {"sg_firewall_var_errors": firewall_var_errors}
