"""The command policy: what it refuses, what it lets through, and that it stays fast."""

from __future__ import annotations

import time

import pytest

from orchestrator.errors import ConfigError, PolicyDenied
from orchestrator.policy import CommandPolicy, split_commands

POLICY = CommandPolicy.default()

DENIED = {
    "rm-root": [
        "rm -rf /", "rm -rf /*", "rm -fr /", "rm -r -f /", "rm -Rf /", "sudo rm -rf /",
        "rm -rf --no-preserve-root /", "rm --recursive --force /", "/bin/rm -rf /",
        "cd /tmp && rm -rf /", "rm -rf / tmp", "rm -rf //", "rm -rf /etc", "rm -rf /usr/",
        "rm -rf ~", "rm -rf $HOME", "rm -rf '/'", "sh -c 'rm -rf /'", "echo x; rm -rf /*",
        "rm -rf -- /", "rm -rf /.", "sudo -u root rm -rf /var", "env X=1 rm -rf /boot",
        "rm -r --no-preserve-root --one-file-system /", 'bash -c "rm -rf /"',
        "true && $(rm -rf /)",
    ],
    "mkfs": ["mkfs.ext4 /dev/sdb", "mkfs -t xfs /dev/vdb", "sudo mkfs /dev/sda1",
             "wipefs -a /dev/sda", "mke2fs /dev/sdb", "/sbin/mkfs.xfs -f /dev/nvme1n1",
             "mkswap /dev/sdc"],
    "dd-device": ["dd if=/dev/zero of=/dev/sda", "dd if=/dev/zero of=/dev/nvme0n1 bs=1M",
                  "dd of=/dev/vda if=x", "sudo dd if=/dev/urandom of=/dev/mapper/root",
                  "dd if=img of='/dev/sdb' bs=4M"],
    "redirect-device": ["> /dev/sda", "echo x > /dev/sda", "cat img >/dev/nvme0n1",
                        "echo x | tee /dev/sdb", "cat x >> /dev/xvda"],
    "power": ["shutdown -h now", "reboot", "sudo reboot", "halt", "poweroff",
              "systemctl reboot", "systemctl --no-block poweroff", "init 0", "init 6",
              "/sbin/shutdown -r now", "uptime; reboot", "uptime && sudo /usr/sbin/reboot",
              "true | poweroff", "$(reboot)", "`halt`", "nohup reboot &", "env FOO=1 reboot",
              "timeout 5 reboot", "timeout -s KILL 5 reboot", "xargs reboot",
              "echo 'reboot now'", 'bash -c "shutdown now"', "nice -n 5 reboot",
              "if true; then reboot; fi", "loginctl poweroff", "telinit 6"],
    "fork-bomb": [":(){ :|:& };:", ":(){ :|: & };:", "bomb(){ bomb|bomb& };bomb",
                  "f() { f | f & }; f"],
    "chmod-root": ["chmod -R 777 /", "chmod 777 -R /", "sudo chmod -R 777 /",
                   "chown -R nobody /", "chmod -R 777 /etc", "chmod --recursive 777 /",
                   "chgrp -R users /usr"],
}

ALLOWED = [
    # arguments, not programs
    "echo mkfs", "man shutdown", "cat /var/log/reboot.log", "grep halt file",
    "ls /sbin/reboot", "echo rm -rf /", "git rm -r --cached /", "ps aux | grep reboot",
    "last reboot", "journalctl --list-boots", "docker rm -f x", "which poweroff",
    "halt_check", "shutdown_hook.sh", "init_db.sh", "echo ':(){ }'",
    # the same programs, harmless uses
    "rm -rf /tmp/x", "rm -rf /tmp/*", "rm -rf ./build", "rm /tmp/a", "rm -f /etc/foo.conf",
    "rm -rf /var/tmp/cache", "rm -rf /home/user/old", "sudo -u app rm -rf /var/lib/app/c",
    "dd if=/dev/sda of=/tmp/disk.img", "dd if=/dev/zero of=/tmp/file bs=1M count=1",
    "echo x > /dev/null", "cat x >/dev/stderr", "echo x | tee /tmp/log",
    "chmod -R 755 /srv/app", "chmod 777 /tmp/x", "chown -R app /opt/app", "chmod 755 /",
    "systemctl status sshd", "systemctl restart nginx", "systemctl is-system-running",
    "init --version", "uptime", "df -h /", "ls -la /", "du -sh /*", "find / -name x",
    "kill -HUP 1", "cat /proc/mdstat", "who -b",
]


@pytest.mark.parametrize(("rule", "command"),
                         [(rule, c) for rule, commands in DENIED.items() for c in commands])
def test_dangerous_commands_are_denied_by_the_right_rule(rule: str, command: str) -> None:
    decision = POLICY.check(command)
    assert not decision.allowed, command
    assert decision.rule == rule, (command, decision)


@pytest.mark.parametrize("command", ALLOWED)
def test_ordinary_commands_are_allowed(command: str) -> None:
    decision = POLICY.check(command)
    assert decision.allowed, (command, decision)


def test_quoted_text_counts_as_a_command_a_documented_false_positive() -> None:
    # `sh -c '...'` runs quoted text, so quoted text starting with a program is examined:
    # harmless `echo "mkfs is a tool"` is refused; rephrase it or let an admin override.
    assert not POLICY.check('echo "mkfs is a tool"').allowed
    assert POLICY.check("echo a tool named mkfs").allowed


def test_enforce_raises_policy_denied_naming_the_rule() -> None:
    with pytest.raises(PolicyDenied) as err:
        POLICY.enforce("sudo reboot")
    assert err.value.rule == "power"
    assert "power" in str(err.value)
    assert POLICY.enforce("uptime").allowed


def test_extra_rules_from_settings() -> None:
    policy = CommandPolicy.default([r"\biptables\s+-F\b"])
    assert policy.check("iptables -F").rule == "custom-1"
    assert policy.check("iptables -L").allowed
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        CommandPolicy.default(["("])


def test_split_commands_sees_through_quotes_and_separators() -> None:
    assert list(split_commands("a 'b c'; d")) == [["a", "b c"], ["d"], ["b", "c"]]


@pytest.mark.parametrize("unit", ["a", "\n", " \n", "rm -r ", "sudo ", "env A=1 ", "(",
                                  "'", "f(){ ", "> ", "x=", "\\", "`", "/"])
def test_linear_time_on_hostile_input(unit: str) -> None:
    command = unit * (65536 // len(unit))
    started = time.perf_counter()
    POLICY.check(command)
    assert time.perf_counter() - started < 2.0
