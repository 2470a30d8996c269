"""Capture a collector's real output on this machine into a fixture.

    python tests/collectors/capture.py COLLECTOR CASE --description "..." [--sh "busybox sh"]
        [--path-prefix DIR] [--options JSON] [--drop-lines REGEX]

Runs exactly the command the collector sends (after the sweep's shell prelude) under
``/bin/sh`` (or ``--sh``), stores stdout and the parser's current result; review the diff.
``--drop-lines`` removes matching lines from the stored output (say so in the description).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from collector_fixtures import FIXTURES, outcome, run_case, write

from collectors.registry import default_registry
from collectors.script import PRELUDE


def capture(
    collector: str, options: dict[str, object], sh: str, path_prefix: str
) -> tuple[str, str]:
    c = default_registry().get(collector)
    command = c.command(c.resolve_options(options))
    env = dict(os.environ)
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    proc = subprocess.run(
        [*sh.split(), "-c", PRELUDE + "{ " + command + "\n} </dev/null 2>/dev/null"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    return command, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("collector")
    ap.add_argument("case")
    ap.add_argument("--description", required=True)
    ap.add_argument("--sh", default="/bin/sh")
    ap.add_argument("--path-prefix", default="")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--drop-lines", default="")
    args = ap.parse_args()
    options = json.loads(args.options)
    command, stdout = capture(args.collector, options, args.sh, args.path_prefix)
    if args.drop_lines:
        stdout = "".join(
            ln for ln in stdout.splitlines(keepends=True) if not re.search(args.drop_lines, ln)
        )
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = m.group(1) if m else os_name
    tools = f" (PATH {args.path_prefix} first)" if args.path_prefix else ""
    data: dict[str, object] = {
        "description": args.description,
        "source": f"captured with {args.sh}{tools} on {os_name}, kernel {platform.release()}",
        "captured": True,
        "command": command,
    }
    if options:
        data["options"] = options
    data["stdout"] = stdout
    path = FIXTURES / args.collector / f"{args.case}.json"
    _, samples = run_case(path, data)
    data.update(outcome(samples))
    write(path, data)
    print(f"wrote {path} ({len(data['expected'])} samples)")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
