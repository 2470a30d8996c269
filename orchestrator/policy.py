"""Command policy: deny rules checked before any command runs on any host.

A guard rail against the classic fleet-wide accidents, not a sandbox: anyone who means to
get around it can (``$(printf rebo)ot``), which is why runs are also audited, and why admins
may override it per run (``override_policy``), which is audited as such.

The command is split the way a shell would split it, roughly: into *simple commands* at
``;``, ``&``, ``|``, newlines, ``(``, ``)``, ``{``, ``}``, backticks and ``$(``; each into
words, with quotes and backslashes removed. The text inside quotes is also examined as a
command of its own, because ``sh -c '...'``, ``bash -c "..."`` and ``ssh host '...'`` run
it. Leading ``VAR=value`` words and wrappers (``sudo -u x``, ``env``, ``nohup``, ``nice -n
5``, ``timeout 5``, ``xargs``, ``exec``, ``chroot DIR``...) are skipped; the next word is
the *program*, the rest its arguments. A rule looks at the program and its arguments, so
it costs linear time whatever the input (no regular expression can backtrack on a
65 KiB command).

Decisions that follow from that, and are tested:

* ``echo mkfs``, ``man shutdown``, ``cat /var/log/reboot.log``, ``git rm -r --cached /``
  are allowed: the word is an argument, not the program.
* ``echo 'reboot now'`` is refused: quoted text whose first word is a dangerous program is
  treated as something a shell may run. That false positive is accepted (rephrase it, or an
  admin overrides) in exchange for catching ``sh -c 'reboot'``.
* ``rm -rf /tmp/x`` is allowed; ``rm -rf /``, ``rm -fr /*``, ``rm -r --no-preserve-root
  /``, ``rm -rf /etc`` (and the other top-level system directories, ``~``, ``$HOME``) are
  refused. ``dd if=/dev/sda of=/tmp/disk.img`` (reading a disk) is allowed; ``dd ...
  of=/dev/sda`` is refused, and so is ``> /dev/sda``; ``> /dev/null`` is allowed.

Example::

    policy = CommandPolicy.default()
    policy.check("uptime")          # PolicyDecision(allowed=True, rule=None, reason=None)
    policy.check("sudo reboot")     # allowed=False, rule="power"
    policy.enforce("mkfs.ext4 /dev/sdb")  # raises PolicyDenied
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from orchestrator.errors import ConfigError, PolicyDenied

MAX_QUOTE_DEPTH = 4  # quotes inside quotes examined as commands, this deep

_SEPARATORS = frozenset(";&|\n(){}`")
_QUOTES = frozenset("'\"")

# ---------------------------------------------------------------------------- splitting


def split_commands(text: str, depth: int = 0) -> Iterator[list[str]]:
    """The simple commands in ``text``, each as its words (quotes removed).

    >>> list(split_commands("cd /tmp && sudo rm -rf 'a b'; echo \\"x\\""))
    [['cd', '/tmp'], ['sudo', 'rm', '-rf', 'a b'], ['a b'], ['echo', 'x'], ['x']]
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    nested: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _QUOTES:
            end = _closing_quote(text, i)
            inner = text[i + 1:end]
            if ch == '"':
                inner = re.sub(r"\\([\\\"$`])", r"\1", inner)
            word.append(inner)
            in_word = True
            if depth < MAX_QUOTE_DEPTH:
                nested.append(inner)
            i = end + 1
            continue
        if ch == "\\" and i + 1 < n:
            if text[i + 1] != "\n":  # backslash-newline continues the line
                word.append(text[i + 1])
                in_word = True
            i += 2
            continue
        if ch in _SEPARATORS or (ch == "$" and text.startswith("$(", i)):
            if in_word:
                words.append("".join(word))
            if words:
                yield words
            words, word, in_word = [], [], False
            i += 2 if ch == "$" else 1
            continue
        if ch.isspace():
            if in_word:
                words.append("".join(word))
            word, in_word = [], False
            i += 1
            continue
        word.append(ch)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    if words:
        yield words
    for inner in nested:
        yield from split_commands(inner, depth + 1)


def _closing_quote(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return len(text)  # unterminated: the rest is quoted


# Wrappers run the command that follows them; value: options that take an argument.
_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset(["-u", "-g", "-p", "-C", "-h", "-U", "-r", "-t", "-D", "-T", "-R"]),
    "doas": frozenset(["-u", "-C"]),
    "env": frozenset(["-u", "-C", "-S"]),
    "nice": frozenset(["-n"]),
    "ionice": frozenset(["-c", "-n", "-p"]),
    "timeout": frozenset(["-s", "-k"]),
    "xargs": frozenset(["-I", "-n", "-P", "-L", "-d", "-E", "-s", "-a"]),
    "stdbuf": frozenset(["-i", "-o", "-e"]),
    "flock": frozenset(["-w", "-E"]),
    "chroot": frozenset(["--userspec", "--groups"]),
    "nohup": frozenset(), "exec": frozenset(), "command": frozenset(),
    "builtin": frozenset(), "time": frozenset(), "setsid": frozenset(),
    "busybox": frozenset(), "then": frozenset(), "do": frozenset(), "else": frozenset(),
    "if": frozenset(), "while": frozenset(), "until": frozenset(), "!": frozenset(),
}
# ... and these take one positional argument before the command.
_WRAPPER_OPERAND = frozenset({"timeout", "chroot", "flock"})
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=")


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    program: str  # basename: /usr/sbin/reboot -> reboot
    args: tuple[str, ...]


def parse_simple(words: list[str]) -> SimpleCommand | None:
    """Skip assignments and wrappers; ``None`` when nothing is left to run."""
    i = 0
    while i < len(words):
        word = words[i]
        name = word.rsplit("/", 1)[-1]
        if _ASSIGNMENT.match(word):
            i += 1
            continue
        if name not in _WRAPPERS:
            return SimpleCommand(name, tuple(words[i + 1:]))
        takes_arg = _WRAPPERS[name]
        i += 1
        while i < len(words) and words[i].startswith("-") and words[i] != "--":
            option = words[i]
            i += 2 if option in takes_arg else 1
        if i < len(words) and words[i] == "--":
            i += 1
        if name == "env":
            while i < len(words) and _ASSIGNMENT.match(words[i]):
                i += 1
        if name in _WRAPPER_OPERAND:
            i += 1
    return None


# ---------------------------------------------------------------------------- rules

_SYSTEM_DIRS = ("bin|boot|dev|etc|home|lib|lib32|lib64|libx32|opt|proc|root|run|sbin|srv|sys"
                "|usr|var")
# The whole file system or a top-level system directory: /, //, /*, /., /etc, /usr/, ~, $HOME
_ROOTISH = re.compile(
    rf"/++(?:\.|\*)?+/*+|/++(?:{_SYSTEM_DIRS})/*+\*?+|~/?+\*?+|\$\{{?HOME\}}?/?+\*?+"
)
_BLOCK_DEVICE = re.compile(
    r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|md\d|dm-\d|mapper/|disk/"
    r"|loop\d|sr\d|nbd\d|zd\d|rbd\d)"
)
_REDIRECT_TO_DEVICE = re.compile(rf"(?:>>?+|&>|>\|)\s*+[\"']?+{_BLOCK_DEVICE.pattern}")
# name(){ name|name& };name -- any name, any spacing; possessive so nothing backtracks.
_FORK_BOMB = re.compile(r"(?<![\w:.])([\w:.]++)\s*+\(\s*+\)\s*+\{[^}]{0,64}?\1\s*\|\s*\1\s*&")
_POWER_PROGRAMS = frozenset({"shutdown", "reboot", "halt", "poweroff", "kexec"})
_POWER_VERBS = frozenset({"reboot", "poweroff", "halt", "kexec", "suspend", "hibernate",
                          "hybrid-sleep", "emergency", "rescue", "soft-reboot"})
_MKFS = re.compile(r"mkfs(?:\..+)?|mke2fs|mkswap|wipefs|mkdosfs|mkntfs|mkfs\w+")


def _options_and_operands(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    options, operands, after_dashdash = [], [], False
    for arg in args:
        if after_dashdash or not arg.startswith("-") or arg == "-":
            operands.append(arg)
        elif arg == "--":
            after_dashdash = True
        else:
            options.append(arg)
    return options, operands


def _recursive(options: list[str], short: str) -> bool:
    return any(o == "--recursive" or (not o.startswith("--") and short in o[1:])
               for o in options)


def _rm_root(cmd: SimpleCommand) -> bool:
    if cmd.program != "rm":
        return False
    options, operands = _options_and_operands(cmd.args)
    if "--no-preserve-root" in options:
        return True
    recursive = _recursive(options, "r") or _recursive(options, "R")
    return recursive and any(_ROOTISH.fullmatch(op) for op in operands)


def _chmod_root(cmd: SimpleCommand) -> bool:
    if cmd.program not in ("chmod", "chown", "chgrp"):
        return False
    options, operands = _options_and_operands(cmd.args)
    return _recursive(options, "R") and any(_ROOTISH.fullmatch(op) for op in operands)


def _mkfs(cmd: SimpleCommand) -> bool:
    return _MKFS.fullmatch(cmd.program) is not None


def _dd_device(cmd: SimpleCommand) -> bool:
    return cmd.program == "dd" and any(
        a.startswith("of=") and _BLOCK_DEVICE.match(a, 3) for a in cmd.args
    )


def _tee_device(cmd: SimpleCommand) -> bool:
    return cmd.program == "tee" and any(_BLOCK_DEVICE.match(a) for a in cmd.args)


def _power(cmd: SimpleCommand) -> bool:
    if cmd.program in _POWER_PROGRAMS:
        return True
    _, operands = _options_and_operands(cmd.args)
    if cmd.program in ("systemctl", "loginctl"):
        return bool(operands) and operands[0] in _POWER_VERBS
    if cmd.program in ("init", "telinit"):
        return bool(operands) and operands[0] in ("0", "1", "6", "s", "S")
    return False


@dataclass(frozen=True, slots=True)
class Rule:
    """A deny rule: a test on each simple command, or a regular expression on the text."""

    name: str
    reason: str
    on_command: Callable[[SimpleCommand], bool] | None = None
    on_text: re.Pattern[str] | None = None

    def matches(self, text: str, commands: list[SimpleCommand]) -> bool:
        if self.on_text is not None and self.on_text.search(text):
            return True
        return self.on_command is not None and any(self.on_command(c) for c in commands)


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("rm-root", "recursive removal of / or a top-level system directory", _rm_root),
    Rule("mkfs", "creating a file system (or wiping one) destroys what is on the device",
         _mkfs),
    Rule("dd-device", "dd onto a block device overwrites it", _dd_device),
    Rule("redirect-device", "writing onto a block device overwrites it", _tee_device,
         _REDIRECT_TO_DEVICE),
    Rule("power", "shutting down or rebooting hosts", _power),
    Rule("fork-bomb", "a fork bomb exhausts the host's process table", None, _FORK_BOMB),
    Rule("chmod-root", "recursive permission or ownership change of / or a system directory",
         _chmod_root),
)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    rule: str | None = None
    reason: str | None = None


class CommandPolicy:
    """An ordered list of deny rules; the first that matches decides."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def default(cls, extra: Iterable[str] = ()) -> CommandPolicy:
        """The built-in rules plus ``extra`` regular expressions (named ``custom-N``)."""
        rules = list(DEFAULT_RULES)
        for n, regex in enumerate(extra, 1):
            try:
                pattern = re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"policy deny rule {regex!r} is not a valid regular "
                                  f"expression: {exc}") from exc
            rules.append(Rule(f"custom-{n}", f"matches deny rule {regex!r}", None, pattern))
        return cls(rules)

    def check(self, command: str) -> PolicyDecision:
        commands = [c for words in split_commands(command) if (c := parse_simple(words))]
        for rule in self.rules:
            if rule.matches(command, commands):
                return PolicyDecision(False, rule.name, rule.reason)
        return PolicyDecision(True)

    def enforce(self, command: str) -> PolicyDecision:
        """Like :meth:`check`, but a denial raises :class:`PolicyDenied`."""
        decision = self.check(command)
        if not decision.allowed:
            assert decision.rule is not None and decision.reason is not None
            raise PolicyDenied(command, decision.rule, decision.reason)
        return decision
