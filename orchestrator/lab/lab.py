"""``Lab``: build, inspect and remove the local lab (see docs/lab.md).

Usage::

    lab = Lab(settings)  # state under settings.lab_dir
    info = lab.up(LabSpec(hosts=3, private=2, deep=1))
    lab.status()
    lab.stop_sshd("host01")
    lab.start_sshd("host01")
    lab.host_exec("private01", ["hostname"])  # inside the host, not over SSH
    lab.down()  # everything it made; safe twice, safe after a crash
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import container, network, procs, rootfs, sshd, topology
from orchestrator.lab.inventory_file import write_inventory, write_known_hosts, write_ssh_config
from orchestrator.lab.model import (
    HostStatus,
    Kind,
    LabHost,
    LabInfo,
    LabSpec,
    LabStatus,
    Teardown,
)
from orchestrator.lab.state import STATE_FILE, LabState
from orchestrator.settings import Settings

Progress = Callable[[str], None]
_SAFE_TO_KILL = {"sh", "unshare", "nsenter", "sshd", "sleep"}  # what a lab runs, by comm


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _containers_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = ["unshare", "--uts", "--ipc", "--mount", "--pid", "--fork", "true"]
    return procs.run(probe, check=False).returncode == 0


def _ancestors() -> set[int]:
    """This process and its ancestors: never killed by ``down``."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


class Lab:
    """The local lab whose state lives in ``settings.lab_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = Path(settings.lab_dir).expanduser().absolute()

    # -- paths -------------------------------------------------------------------------------
    @property
    def key_path(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config_path(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def fs_dir(self) -> Path:
        return self.dir / "fs"

    # -- up ----------------------------------------------------------------------------------
    def up(
        self,
        spec: LabSpec | None = None,
        *,
        replace: bool = False,
        progress: Progress | None = None,
    ) -> LabInfo:
        """Build the lab and wait until every sshd accepts connections.

        Refuses (LabError) when this lab, or another lab's network, is already up, unless
        ``replace`` (then it is torn down first). On any failure everything built so far is
        removed again before the error is raised.
        """
        spec = spec or LabSpec()
        spec.validate()
        say = progress or (lambda _msg: None)
        with self._lock():
            kind, loopback_kind = self._choose_kinds(spec)
            uses_netns = kind == "netns" and bool(spec.hosts or spec.private or spec.deep)
            self._check_free(replace, say, uses_netns=uses_netns)
            for tool in (sshd.SSHD, "ssh-keygen"):
                if not shutil.which(tool):
                    raise LabError(
                        f"lab: {tool} not found (install openssh-server and openssh-client)"
                    )
            started = time.monotonic()
            containers = kind != "process"
            user = rootfs.LAB_USER if containers else _current_user()
            try:
                hosts = topology.plan(spec, kind, loopback_kind, user=user)
            except OSError as exc:
                raise LabError(f"lab: {exc}") from exc
            mode = "netns" if any(h.kind == "netns" for h in hosts) else "loopback"
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            state = LabState(
                lab_dir=str(self.dir),
                mode=mode,
                isolated=mode == "netns",
                containers=containers,
                user=user,
                spec=asdict(spec),
                hosts=hosts,
            )
            state.save()
            try:
                self._build(state, spec, say)
            except BaseException:
                say("failed: removing what was built")
                self._down(force=False)
                raise
            state.phase = "up"
            state.seconds = round(time.monotonic() - started, 2)
            state.save()
            say(f"up in {state.seconds:.1f}s")
            return self._info(state)

    def _check_free(self, replace: bool, say: Progress, *, uses_netns: bool) -> None:
        """Refuse, or with ``replace`` remove, what stands in the way of a new lab here.

        A lab in another state dir stands in the way only when both need the network
        namespaces (their names and addresses are machine-wide).
        """
        existing = LabState.load(self.dir) if (self.dir / STATE_FILE).exists() else None
        # a build still marked "building" while we hold the lock was interrupted: clean it up
        if existing is not None and existing.phase == "up" and not replace:
            raise LabError(
                f"lab: already up in {self.dir} ({len(existing.hosts)} machines, "
                f"{existing.mode} mode); run 'serverguard lab down' first or use --replace"
            )
        if existing is not None or self.dir.exists():
            say("removing the previous lab")
            self._down(force=False)
        if not uses_netns:
            return
        found = network.discover()
        if found.empty:
            return
        owner = found.owner
        if owner and owner != str(self.dir) and (Path(owner) / STATE_FILE).exists():
            if not replace:
                raise LabError(
                    f"lab: another lab's network is up (its state is in {owner}); run "
                    f"'serverguard lab down' with SERVERGUARD_STATE_DIR={Path(owner).parent} "
                    "or use --replace"
                )
            say(f"removing the lab in {owner}")
            Lab(Settings(state_dir=Path(owner).parent)).down()
        found = network.discover()
        if not found.empty:
            say("removing leftovers of a crashed lab")
            network.kill_netns_processes(found.netns)
            network.teardown(found)

    @staticmethod
    def _choose_kinds(spec: LabSpec) -> tuple[Kind, Kind]:
        """(kind of the hosts, kind of the loopback machine)."""
        root = os.geteuid() == 0
        needs_netns = bool(spec.hosts or spec.private or spec.deep)
        if spec.mode == "netns":
            if not root:
                raise LabError("lab: --mode netns needs root")
            if needs_netns and not network.netns_available():
                raise LabError(
                    "lab: network namespaces are not available here ('ip netns add' fails)"
                )
            return "netns", "shared" if _containers_available() else "process"
        if spec.mode == "auto" and root and (not needs_netns or network.netns_available()):
            shared_ok = _containers_available()
            return "netns", "shared" if shared_ok else "process"
        fallback: Kind = "shared" if _containers_available() else "process"
        return fallback, fallback

    def _build(self, state: LabState, spec: LabSpec, say: Progress) -> None:
        hosts = state.hosts
        boxes = [h for h in hosts if h.kind != "process"]
        plain = [h for h in hosts if h.kind == "process"]
        for h in hosts:
            (self.dir / h.name).mkdir(exist_ok=True)

        say("generating keys")
        sshd.keygen([(self.key_path, "serverguard-lab")])
        authorized = self.key_path.with_suffix(".pub").read_text()
        host_keys: dict[str, Path] = {}
        if boxes:
            rootfs.mount_tmpfs(self.fs_dir)
            accounts = rootfs.Accounts.from_machine()
            for h in boxes:
                host_keys[h.name] = rootfs.prepare(
                    self.fs_dir, h, accounts, authorized, sshd.config(h, self.dir)
                )
        if plain:
            (self.dir / "authorized_keys").write_text(authorized)
            for h in plain:
                (self.dir / h.name / "sshd_config").write_text(sshd.config(h, self.dir))
                host_keys[h.name] = self.dir / h.name / "ssh_host_ed25519_key"
        sshd.keygen([(path, f"serverguard-lab {name}") for name, path in host_keys.items()])

        if any(h.kind == "netns" for h in hosts):
            say("creating network namespaces, bridges and links")
            network.build(hosts, owner=self.dir)
            for h in hosts:
                if h.kind == "netns":
                    (self.dir / h.name / "ip.batch").write_text(network.host_batch(h))
                    (self.dir / h.name / "nft.rules").write_text(network.NFT_RULES)

        say(f"starting {len(hosts)} sshd{'s' if len(hosts) != 1 else ''}")
        spawned: dict[str, int] = {}
        if boxes:
            state.supervisor_pid = container.start(self.dir, self.fs_dir, boxes)
            state.save()
        for h in plain:
            spawned[h.name] = procs.spawn(
                sshd.process_argv(h, self.dir),
                log=self.dir / h.name / "sshd.log",
            )
        procs.wait_gone(spawned.values(), timeout=10)  # each forks its daemon, then exits

        def netpid(h: LabHost) -> int | bool | None:
            hostdir = self.dir / h.name
            if h.kind == "process":
                status = procs.exit_status(spawned[h.name])
                if status:
                    raise LabError(
                        f"{h.name}: sshd exited with status {status}" + sshd.logs(hostdir)
                    )
                return None
            for marker, what in (
                ("init.failed", "container set-up failed"),
                ("sshd.failed", "sshd did not start"),
            ):
                if (hostdir / marker).exists():
                    raise LabError(f"{h.name}: {what}" + sshd.logs(hostdir))
            pid = container.init_pid(hostdir)
            if pid is None:
                if state.supervisor_pid and not procs.alive(state.supervisor_pid):
                    raise LabError(f"{h.name}: container did not start" + sshd.logs(hostdir))
                return False
            return pid if h.kind == "netns" else None

        say("waiting for every sshd to accept connections")
        sshd.wait_ready(
            hosts, netpid=netpid, reachable=self._reachable, lab_dir=self.dir, timeout=spec.timeout
        )

        say("writing inventory, known_hosts and ssh_config")
        public_keys = {
            name: " ".join(path.with_suffix(".pub").read_text().split()[:2])
            for name, path in host_keys.items()
        }
        write_known_hosts(self.known_hosts_path, hosts, public_keys)
        write_ssh_config(
            self.ssh_config_path, hosts, key=self.key_path, known_hosts=self.known_hosts_path
        )
        write_inventory(
            self.inventory_path,
            hosts,
            user=state.user,
            key=self.key_path,
            known_hosts=self.known_hosts_path,
            ssh_config=self.ssh_config_path,
        )
        procs.reap()

    @staticmethod
    def _reachable(h: LabHost) -> bool:
        """Can the machine's own namespace connect to this host directly?"""
        return h.kind != "netns" or h.role == "public" or h.name == "bastion"

    # -- down --------------------------------------------------------------------------------
    def down(self, *, force: bool = False) -> Teardown:
        """Remove every process, namespace, link, route, mount and file of this lab.

        Safe to run twice and after a crash: leftovers are found by name (``sg-*`` links and
        namespaces, mounts and processes under the lab dir). Another lab's network that is
        still up (its state file exists) is left alone unless ``force``.
        """
        with self._lock(create=False):
            return self._down(force=force)

    def _down(self, *, force: bool) -> Teardown:
        result = Teardown()
        spare = _ancestors()
        state = None
        with contextlib.suppress(LabError):
            state = LabState.load(self.dir)
        # 1. containers: killing a PID 1 ends its whole PID namespace; once they are all gone
        #    the supervisor reaps them and exits by itself
        inits = self._init_pids()
        procs.kill(inits)
        procs.wait_gone(inits)
        result.processes += [
            f"container {name} (pid {pid})"
            for pid, name in sorted(inits.items(), key=lambda item: item[1])
        ]
        if state and state.supervisor_pid and state.phase == "up":
            procs.wait_gone([state.supervisor_pid], timeout=2)
        # 2. whatever else still runs for this lab (a crash or failure half-way, fallback sshds)
        result.processes += self._sweep(spare)
        # 3. the network (names are machine-wide: another lab's is kept)
        if os.geteuid() == 0:
            found = network.discover()
            owner = found.owner
            foreign = bool(owner and owner != str(self.dir) and (Path(owner) / STATE_FILE).exists())
            if not found.empty and foreign and not force:
                result.kept.append(f"network of the lab in {owner}")
            elif not found.empty:
                killed = network.kill_netns_processes(found.netns)
                result.processes += [f"pid {pid} (in a lab network namespace)" for pid in killed]
                network.teardown(found)
                result.netns, result.links, result.routes = found.netns, found.links, found.routes
        # 4. mounts, then files
        result.mounts = rootfs.unmount_under(self.dir)
        if self.dir.exists():
            left = rootfs.mounts_under(self.dir)
            if left:
                raise LabError(f"lab: cannot unmount {left[0]}; not removing {self.dir}")
            result.files.append(str(self.dir))
            shutil.rmtree(self.dir, ignore_errors=True)
        procs.reap()
        return result

    def _init_pids(self) -> dict[int, str]:
        """{pid: host} of every container init recorded under the lab dir and still running."""
        inits: dict[int, str] = {}
        if self.dir.is_dir():
            for hostdir in self.dir.iterdir():
                pid = container.init_pid(hostdir) if hostdir.is_dir() else None
                if pid:
                    inits[pid] = hostdir.name
        return inits

    def _sweep(self, spare: set[int]) -> list[str]:
        """Kill every process left of this lab; repeat until a scan finds none.

        That is: the supervisor and everything in its session (containers half started),
        container inits recorded since, processes whose command line names the lab dir
        (fallback sshds...) and the sessions of fallback sshds (their descendants).
        """
        marker = str(self.dir) + "/"
        killed: dict[int, procs.Proc] = {}
        for _ in range(10):
            everyone = list(procs.scan())
            supervisors = {
                p.pid
                for p in everyone
                if container.SUPERVISOR_TAG in p.cmdline and marker in p.cmdline
            }
            inits = self._init_pids()
            targets = {
                p.pid: p
                for p in everyone
                if p.pid in supervisors
                or p.sid in supervisors
                or p.pid in inits
                or (marker in p.cmdline and p.comm in _SAFE_TO_KILL)
            }
            parents = {pid for pid, p in targets.items() if p.comm == "sshd"}
            grew = True
            while grew:  # the sessions of a fallback sshd are its descendants
                grew = False
                for p in everyone:
                    if p.ppid in parents and p.pid not in parents:
                        targets[p.pid] = p
                        parents.add(p.pid)
                        grew = True
            for pid in spare | set(killed):
                targets.pop(pid, None)
            if not targets:
                break
            procs.kill(targets)
            procs.wait_gone(targets)
            killed.update(targets)
        return [f"{p.comm} (pid {p.pid})" for p in killed.values()]

    # -- status ------------------------------------------------------------------------------
    def state(self) -> LabState | None:
        return LabState.load(self.dir)

    def info(self) -> LabInfo | None:
        """The LabInfo of the lab that is up here, or None."""
        state = self.state()
        return self._info(state) if state and state.phase == "up" else None

    def _info(self, state: LabState) -> LabInfo:
        return LabInfo(
            lab_dir=self.dir,
            inventory_path=self.inventory_path,
            key_path=self.key_path,
            known_hosts_path=self.known_hosts_path,
            ssh_config_path=self.ssh_config_path,
            mode="netns" if state.mode == "netns" else "loopback",
            isolated=state.isolated,
            containers=state.containers,
            user=state.user,
            hosts=tuple(state.hosts),
            seconds=state.seconds,
        )

    def status(self) -> LabStatus:
        state = self.state()
        if state is None:
            return LabStatus(up=False, lab_dir=self.dir)
        inits = {
            h.name: container.init_pid(self.dir / h.name)
            for h in state.hosts
            if h.kind != "process"
        }
        members = container.processes(p for p in inits.values() if p)
        rows = []
        for h in state.hosts:
            pid: int | None = None
            alive = False
            if h.kind == "process":
                pid = procs.read_pid(self.dir / h.name / "sshd.pid")
                if not procs.alive(pid):
                    pid = None
                alive = pid is not None and sshd.listening(None, h.address, h.port)
            else:
                init = inits.get(h.name)
                listener = container.sshd_listener(init, members.get(init, [])) if init else None
                pid = listener.pid if listener else None
                netpid = init if h.kind == "netns" else None
                alive = pid is not None and sshd.listening(netpid, h.address, h.port)
            for name in h.inventory_names:
                rows.append(
                    HostStatus(
                        name=name,
                        role=h.role,
                        address=h.address,
                        port=h.port,
                        jump=h.jump,
                        machine=h.name,
                        kind=h.kind,
                        sshd_pid=pid,
                        alive=alive,
                    )
                )
        return LabStatus(
            up=state.phase == "up",
            lab_dir=self.dir,
            mode=state.mode,
            isolated=state.isolated,
            inventory_path=self.inventory_path if self.inventory_path.exists() else None,
            hosts=rows,
        )

    # -- one host ----------------------------------------------------------------------------
    def _host(self, name: str) -> LabHost:
        state = self.state()
        if state is None:
            raise LabError(f"lab: not up (no {self.dir / STATE_FILE})")
        return self._info(state).host(name)

    def _init(self, host: LabHost) -> int:
        pid = container.init_pid(self.dir / host.name)
        if pid is None:
            raise LabError(f"{host.name}: the lab host is not running")
        return pid

    def _sshd_processes(self, host: LabHost) -> tuple[procs.Proc | None, list[procs.Proc]]:
        """(the listening sshd, every other sshd process: the sessions) of one machine."""
        if host.kind == "process":
            pid = procs.read_pid(self.dir / host.name / "sshd.pid")
            everyone = list(procs.scan())
            listener = next((p for p in everyone if p.pid == pid and p.comm == "sshd"), None)
            sessions: list[procs.Proc] = []
            parents = {listener.pid} if listener else set()
            grew = True
            while grew:  # every descendant of the listener
                grew = False
                for p in everyone:
                    if p.ppid in parents and p.pid not in parents:
                        sessions.append(p)
                        parents.add(p.pid)
                        grew = True
            return listener, sessions
        init = self._init(host)
        members = container.processes([init])[init]
        listener = container.sshd_listener(init, members)
        others = [p for p in members if p.comm == "sshd" and p is not listener]
        return listener, others

    def stop_sshd(self, name: str, *, sessions: bool = True) -> None:
        """Kill one machine's sshd (SIGKILL), by default with its open sessions too.

        The port then refuses connections. For the loopback machine every lo* entry goes down.
        """
        host = self._host(name)
        listener, others = self._sshd_processes(host)
        targets = ([listener.pid] if listener else []) + (
            [p.pid for p in others] if sessions else []
        )
        procs.kill(targets)
        left = procs.wait_gone(targets)
        if left:
            raise LabError(f"{host.name}: sshd processes {left} did not stop")

    def start_sshd(self, name: str, *, timeout: float = 10.0) -> None:
        """(Re)start one machine's sshd (no-op if running) and wait until it accepts TCP."""
        host = self._host(name)
        listener, _ = self._sshd_processes(host)
        if listener is None:
            if host.kind == "process":
                pid = procs.spawn(
                    sshd.process_argv(host, self.dir), log=self.dir / host.name / "sshd.log"
                )
                procs.wait_gone([pid], timeout=5)  # sshd forks into the background
            else:
                proc = self.host_exec(host.name, sshd.container_argv(), timeout=timeout)
                if proc.returncode != 0:
                    raise LabError(
                        f"{host.name}: sshd did not start: {proc.stderr.strip() or proc.returncode}"
                        + sshd.logs(self.dir / host.name)
                    )

        def netpid(h: LabHost) -> int | bool | None:
            return self._init(h) if h.kind == "netns" else None

        sshd.wait_ready(
            [host], netpid=netpid, reachable=self._reachable, lab_dir=self.dir, timeout=timeout
        )

    def host_exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float | None = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as root inside the host (its namespaces and root), not over SSH.

        In the plain-process fallback there is no host to enter: ``argv`` runs on the machine.
        """
        host = self._host(name)
        if host.kind == "process":
            cmd, env = list(argv), None
        else:
            cmd = container.exec_argv(self._init(host), argv, own_net=host.kind == "netns")
            env = container.HOME_ENV
        try:
            return subprocess.run(
                cmd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=check,
                env=env,
            )
        except OSError as exc:
            raise LabError(f"{host.name}: cannot run {argv[0]!r}: {exc.strerror}") from exc

    # -- helpers -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, *, create: bool = True) -> Iterator[None]:
        """One up/down at a time per state dir (flock on the directory: no file to leave)."""
        parent = self.dir.parent
        if not create and not parent.is_dir():
            yield  # nothing of this lab on disk; only machine-wide leftovers to look for
            return
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
