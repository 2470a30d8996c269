"""Shared fixtures: one real lab (sshd in network namespaces) per test session."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings

LAB_LOCK = "/tmp/serverguard-test-lab.lock"
LAB_LOCK_WAIT = 900.0
LAB_SPEC = {"hosts": 3, "private": 2, "deep": 1, "loopback_hosts": 50}


@pytest.fixture(scope="session")
def lab_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serverguard-state")


@dataclass
class LabHandle:
    lab: Any  # orchestrator.lab.Lab
    info: Any  # what Lab.up returned
    inventory_path: Path


@pytest.fixture(scope="session")
def lab(lab_state_dir: Path) -> Iterator[LabHandle]:
    """The lab, brought up once for the whole session and torn down at the end."""
    if shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("sshd is not installed (./.ci/dev setup installs openssh-server)")
    from orchestrator.lab import Lab, LabSpec

    # Only one namespace lab fits on a machine: concurrent test sessions take turns.
    with open(LAB_LOCK, "w") as lock:
        deadline = time.monotonic() + LAB_LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session holds the lab ({LAB_LOCK})")
                time.sleep(1)
        the_lab = Lab(Settings(state_dir=lab_state_dir))
        info = the_lab.up(LabSpec(**LAB_SPEC), replace=True)
        try:
            yield LabHandle(the_lab, info, Path(info.inventory_path))
        finally:
            the_lab.down()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Engine settings isolated from the user's own known_hosts and agent."""
    return Settings(
        state_dir=tmp_path / "state",
        user_known_hosts=tmp_path / "no_known_hosts",
        use_ssh_agent=False,
        connect_timeout=5.0,
        command_timeout=20.0,
        idle_timeout=0,
    )


# Playbook tests reconfigure the session lab's hosts (sshd hardening, firewall rules); every
# other test expects the hosts as the lab built them, so these run last.
HOST_MUTATING_MODULES = ("test_playbooks.py", "test_playbooks_cli.py")
# The lab's own tests build and tear down a lab of their own, which they can do only before
# any test has brought up the session's lab (one lab per machine): these run first.
OWN_LAB_MODULES = ("test_lab.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: (item.path.name in HOST_MUTATING_MODULES,
                                 item.path.name not in OWN_LAB_MODULES))
