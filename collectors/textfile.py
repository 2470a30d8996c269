"""textfile: the user's own metrics, from ``*.prom`` files and/or scripts (default off).

Files in ``directory`` are read with the ``read`` builtin (plus one ``stat`` for their mtimes);
each entry of ``scripts`` (name -> shell code) runs in its own subshell through ``eval`` of a
quoted string, so a syntax error or an ``exit`` in it cannot break the sweep. Every line is
prefixed by the shell, so file content can never forge the framing.

Every line is validated before anything is forwarded (``TextValidator``): metric and label
name syntax, quoted and escaped label values, a float value, no client timestamps, no
reserved ``job``/``instance``/``__*`` labels, no reserved metric names (ServerGuard's own
``up``, ``serverguard_*``, ``node_textfile_scrape_error``, ``node_textfile_mtime_seconds``,
in samples or ``# TYPE`` lines), no duplicate series, ``# TYPE`` known, declared once and
before its samples, histogram ``_bucket`` with ``le``. Rejected lines are never
forwarded: they are listed in the notes and counted in
``serverguard_textfile_rejected_lines{file}`` (a per-sweep gauge, hence no ``_total``).
``node_textfile_scrape_error`` is 1 when anything was rejected or a script failed.

Example result for a file ``/var/lib/sg/backup.prom`` holding ``backup_ok 1`` and ``bad-name 2``::

    backup_ok 1
    node_textfile_mtime_seconds{file="/var/lib/sg/backup.prom"} 1700000000
    node_textfile_scrape_error 1
    serverguard_textfile_rejected_lines{file="/var/lib/sg/backup.prom"} 1
"""

from __future__ import annotations

import math

from collectors.base import Collector, Option, Options, Samples, shell_quote
from collectors.text_validator import TextValidator

_FILES = r"""__sg_d=@DIR@
if [ -n "$__sg_d" ] && [ -d "$__sg_d" ]; then
  set -- "$__sg_d"/*.prom
  for __sg_f; do
    [ -f "$__sg_f" ] || continue
    printf 'F %s\n' "$__sg_f"
    while IFS= read -r __sg_l || [ -n "$__sg_l" ]; do printf 'L%s\n' "$__sg_l"; done < "$__sg_f"
  done
  [ -f "$1" ] && stat -c 'T %Y %n' "$@"
fi
"""
_SCRIPT = r"""printf 'X %s\n' @NAME@
{ ( eval @CODE@ ) </dev/null 2>/dev/null; printf '\n@rc %s\n' "$?"; } |
  while IFS= read -r __sg_l || [ -n "$__sg_l" ]; do printf 'L%s\n' "$__sg_l"; done
"""


class TextfileCollector(Collector):
    name = "textfile"
    default_enabled = False
    bounded_output = False  # files and scripts of the host's users: any size
    user_series = True  # may not repeat another collector's series (run_parsers drops it)
    processes = "1 (stat for mtimes) if files exist; per script: 3 forks plus its own"
    options = (
        Option("directory", "", "directory of *.prom files on the host", "str"),
        Option("scripts", {}, "name -> shell code printing Prometheus text", "str_map"),
    )

    def command(self, options: Options) -> str:
        parts = [_FILES.replace("@DIR@", shell_quote(options["directory"]))]
        for name, code in sorted(options["scripts"].items()):
            parts.append(
                _SCRIPT.replace("@NAME@", shell_quote(name)).replace("@CODE@", shell_quote(code))
            )
        return "".join(parts) + ":"

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        v = TextValidator()
        blocks: list[tuple[str, str, list[str]]] = []  # kind (F/X), source, lines
        for line in stdout.split("\n"):
            if line.startswith(("F ", "X ")):
                blocks.append((line[0], line[2:], []))
            elif line.startswith("T "):
                ts, _, path = line[2:].partition(" ")
                # (ASCII digits only: "²".isdigit() is true; too large for a float: inf)
                if ts.isascii() and ts.isdigit() and math.isfinite(mtime := float(ts)):
                    out.add("node_textfile_mtime_seconds", mtime, file=path)
            elif line.startswith("L") and blocks:
                blocks[-1][2].append(line[1:])
        failed = False
        for kind, source, texts in blocks:
            if kind == "X":
                rc = texts.pop()[4:].strip() if texts and texts[-1].startswith("@rc ") else "?"
                if rc != "0":
                    failed = True
                    out.notes.append(f"{source}: script exited with status {rc}")
            for lineno, text in enumerate(texts, 1):
                sample = v.feed(source, lineno, text)
                if sample is not None:
                    out.append(sample)
        per_source: dict[str, int] = {}
        for src, message in v.rejected:
            per_source[src] = per_source.get(src, 0) + 1
            out.notes.append(message)
        for _, source, _ in blocks:
            out.add(
                "serverguard_textfile_rejected_lines", float(per_source.get(source, 0)), file=source
            )
        out.add("node_textfile_scrape_error", 1 if (v.rejected or failed) else 0)
        return out
