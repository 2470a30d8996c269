"""Host facts from the facts command's output: a real capture and hand-made odd hosts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchestrator.facts import FACTS_COMMAND, Address, Disk, parse_facts

HERE = Path(__file__).parent / "facts"


def test_debian_vm_capture() -> None:
    facts = parse_facts((HERE / "debian12_vm.txt").read_text())
    assert (facts.os_name, facts.os_id, facts.os_version) == (
        "Debian GNU/Linux 12 (bookworm)", "debian", "12")
    assert (facts.hostname, facts.kernel, facts.arch) == ("vm", "6.18.44-fc-v669", "x86_64")
    assert (facts.cpu_model, facts.cpu_count) == ("AMD EPYC", 2)
    assert facts.memory_bytes == 24684084 * 1024
    assert facts.uptime_seconds is not None and facts.uptime_seconds > 0
    assert facts.disks == [
        Disk(name="vda", size_bytes=274877906944, rotational=True, removable=False)]
    assert Address(interface="eth0", family="ipv4", address="192.0.2.2/24",
                   scope="global") in facts.addresses
    assert Address(interface="eth0", family="ipv6", address="fe80::fc:ff:fe00:1/64",
                   scope="link") in facts.addresses
    assert all(a.interface != "lo" for a in facts.addresses)
    assert facts.missing == []


BUSYBOX_ARM = """==> /etc/os-release <==
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine \\"Linux\\" v3.19"

==> /proc/sys/kernel/osrelease <==
6.1.0-rpi7-rpi-v8

==> /proc/sys/kernel/hostname <==
pi4

==> /proc/cpuinfo <==
processor\t: 0
BogoMIPS\t: 108.00
CPU part\t: 0xd08

processor\t: 1
BogoMIPS\t: 108.00

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4

==> /proc/meminfo <==
MemTotal:        3885604 kB
MemFree:          100000 kB

==> /proc/uptime <==
12.50 40.00

==> /sys/block/loop0/size <==
2048

==> /sys/block/mmcblk0/size <==
62333952

==> /sys/block/ram0/size <==
8192

==> /sys/block/mmcblk0/queue/rotational <==
0

==> /sys/block/mmcblk0/removable <==
1

==> /sys/block/sda/size <==
0

==> @uname-m <==
aarch64

==> @ip-addr <==
"""


def test_busybox_arm_host_without_ip() -> None:
    facts = parse_facts(BUSYBOX_ARM)
    assert facts.os_name == 'Alpine "Linux" v3.19' and facts.os_id == "alpine"
    assert (facts.kernel, facts.hostname, facts.arch) == ("6.1.0-rpi7-rpi-v8", "pi4", "aarch64")
    assert (facts.cpu_model, facts.cpu_count) == ("BCM2835", 2)
    assert facts.memory_bytes == 3885604 * 1024 and facts.uptime_seconds == 12.5
    # loop, ram and an empty card reader are not disks
    assert facts.disks == [
        Disk(name="mmcblk0", size_bytes=62333952 * 512, rotational=False, removable=True)]
    assert facts.addresses == []
    assert facts.missing == ["addresses (no ip command on the host)"]


def test_empty_or_garbage_output_names_what_is_missing() -> None:
    facts = parse_facts("==> /etc/passwd <==\nroot:x:0:0\n==> not a header\n")
    assert facts.os_name is None and facts.disks == []
    assert facts.missing == ["os_name", "kernel", "hostname", "arch", "cpu_count",
                             "memory_bytes", "uptime_seconds"]


def test_ip_addr_lines() -> None:
    text = ("==> @ip-addr <==\n"
            "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
            "3: veth0@if2    inet 169.254.10.11/24 brd 169.254.10.255 scope global veth0\\"
            "       valid_lft forever preferred_lft forever\n"
            "3: veth0@if2    inet6 fe80::1/64 scope link \\       valid_lft forever\n"
            "4: wg0    link/none \n")
    assert parse_facts(text).addresses == [
        Address(interface="veth0", family="ipv4", address="169.254.10.11/24", scope="global"),
        Address(interface="veth0", family="ipv6", address="fe80::1/64", scope="link"),
    ]


def test_the_command_runs_under_plain_sh() -> None:
    out = subprocess.run(["sh", "-c", FACTS_COMMAND], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    facts = parse_facts(out)
    assert facts.kernel == Path("/proc/sys/kernel/osrelease").read_text().strip()
    assert facts.cpu_count == len([ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                   if ln.startswith("processor")])
