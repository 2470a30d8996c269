"""CpuCounterGuard: CPU counters never go backwards within one boot (node_exporter's rule)."""

from __future__ import annotations

from collectors.cpu import CPU_METRIC, GUEST_METRIC, CpuCounterGuard, boot_time_from_stat
from collectors.sample import Sample


def cpu(**modes: float) -> list[Sample]:
    return [Sample.of(CPU_METRIC, v, cpu="0", mode=m) for m, v in modes.items()]


def values(samples: list[Sample]) -> dict[str, float]:
    return {dict(s.labels)["mode"]: s.value for s in samples}


def test_a_small_step_back_keeps_the_previous_value() -> None:
    g = CpuCounterGuard()
    g.apply(cpu(idle=100.0, iowait=5.0), boot_time=1000)
    assert values(g.apply(cpu(idle=100.5, iowait=4.97), boot_time=1000)) == {
        "idle": 100.5,
        "iowait": 5.0,
    }
    # and once the kernel catches up the real value shows again
    assert values(g.apply(cpu(idle=101.0, iowait=5.2), boot_time=1000))["iowait"] == 5.2


def test_idle_jumping_back_3s_means_a_hotplugged_cpu_and_starts_over() -> None:
    g = CpuCounterGuard()
    g.apply(cpu(idle=500.0, user=50.0), boot_time=1000)
    assert values(g.apply(cpu(idle=2.0, user=1.0), boot_time=1000)) == {"idle": 2.0, "user": 1.0}


def test_a_new_boot_time_forgets_everything() -> None:
    g = CpuCounterGuard()
    g.apply(cpu(idle=500.0, user=50.0), boot_time=1000)
    assert values(g.apply(cpu(idle=499.0, user=1.0), boot_time=90000)) == {
        "idle": 499.0,
        "user": 1.0,
    }


def test_btime_wobbling_by_a_second_is_the_same_boot() -> None:
    g = CpuCounterGuard()
    g.apply(cpu(user=50.0), boot_time=1000)
    assert values(g.apply(cpu(user=49.0), boot_time=1001))["user"] == 50.0


def test_offline_cpus_are_forgotten_and_other_samples_pass_through() -> None:
    g = CpuCounterGuard()
    two = [*cpu(user=9.0), Sample.of(CPU_METRIC, 7.0, cpu="1", mode="user")]
    g.apply(two, boot_time=1)
    other = Sample.of("node_load1", 0.5)
    guest = Sample.of(GUEST_METRIC, 3.0, cpu="0", mode="user")
    out = g.apply([*cpu(user=8.0), guest, other], boot_time=1)
    assert g.cpus == {"0"}
    assert [s.value for s in out] == [9.0, 3.0, 0.5]
    # cpu1 comes back lower after being offline: accepted, it was forgotten
    back = g.apply([Sample.of(CPU_METRIC, 1.0, cpu="1", mode="user")], boot_time=1)
    assert back[0].value == 1.0


def test_boot_time_from_stat() -> None:
    assert boot_time_from_stat("cpu  1 2\nbtime 1795418003\n") == 1795418003
    assert boot_time_from_stat("garbage") is None
    assert boot_time_from_stat("btime 12") == 12  # first line, no newline
    assert boot_time_from_stat("intr 1 xbtime 5\nbtime 7\nprocesses 3\n") == 7
    assert boot_time_from_stat("cpu 1\nbtime x\n") is None
    assert boot_time_from_stat("cpu 1\nbtime\n") is None
