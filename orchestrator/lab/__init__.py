"""The local lab: real sshd hosts in kernel-namespace containers on this machine.

See docs/lab.md. The API used by tests and benchmarks::

    from orchestrator.lab import Lab, LabSpec
    lab = Lab(settings)
    info = lab.up(LabSpec(hosts=3, private=2, deep=1, loopback_hosts=0))
    ...
    lab.down()
"""

from orchestrator.lab.lab import Lab
from orchestrator.lab.model import HostStatus, LabHost, LabInfo, LabSpec, LabStatus, Teardown

__all__ = ["HostStatus", "Lab", "LabHost", "LabInfo", "LabSpec", "LabStatus", "Teardown"]
