#!/usr/bin/env python3
"""A dynamic inventory script (Ansible runs it with --list)."""
import json
import sys

INVENTORY = {
    "_meta": {
        "hostvars": {
            "dyn1": {"ansible_host": "192.0.2.101", "zone": "a"},
            "dyn2": {"ansible_host": "192.0.2.102", "zone": "b"},
        }
    },
    "all": {"children": ["dynamic", "ungrouped"]},
    "dynamic": {"hosts": ["dyn1", "dyn2"], "vars": {"managed_by": "script"}},
    "ungrouped": {"hosts": ["dyn3"]},
}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print(json.dumps(INVENTORY["_meta"]["hostvars"].get(sys.argv[2], {})))
    else:
        print(json.dumps(INVENTORY))
