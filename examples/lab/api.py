"""The lab's Python API, as tests and benchmarks use it.

Run as root from the repository root: ``.venv/bin/python examples/lab/api.py``.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from orchestrator.lab import Lab, LabSpec
from orchestrator.settings import Settings


def refuses(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except OSError:
        return True


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="sg-lab-api-") as state:
        lab = Lab(Settings(state_dir=Path(state)))
        info = lab.up(LabSpec(hosts=2, private=1, deep=0), progress=print)
        try:
            print(f"mode={info.mode} isolated={info.isolated} inventory={info.inventory_path}")
            for row in lab.status().hosts:
                where = f"{row.address}:{row.port}"
                print(f"  {row.name:10} {where:20} pid={row.sshd_pid} up={row.alive}")

            # run something inside a host (not over SSH): e.g. check remote state in a test
            print(lab.host_exec("private01", ["sh", "-c", "hostname; id -un"]).stdout)

            # a host going away, and coming back
            host = info.host("host01")
            lab.stop_sshd("host01")
            print("host01 refuses connections:", refuses(host.address, host.port))
            lab.start_sshd("host01")
            print("host01 back:", lab.status().host("host01").alive)
        finally:
            print(lab.down())


if __name__ == "__main__":
    main()
