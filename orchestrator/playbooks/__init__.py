"""Playbooks: a facade over ansible-runner, tuned for speed, on ServerGuard's inventory.

Public surface::

    run(config, settings, on_event=None) -> PlaybookRun        # blocks until finished
    run_async(config, settings, on_event=None) -> PlaybookRun  # returns at once (a thread)
    PlaybookConfig(playbook, inventory, limit, extra_vars, tags, skip_tags, check, diff,
                   timeout, verbosity, tuning=Tuning(strategy, forks, pipelining,
                   control_persist, env), host_key_policy)
    PlaybookRun: .id .dir .status (RunStatus) .exit_code .stats .events .warnings .errors
                 .wait(timeout) .cancel() .subscribe(callback) .summary()
    resolve_playbook(name) / shipped_playbooks() / check_playbook(path)
    load_run(settings, run_id) / read_events(settings, run_id)

Example::

    run = run_async(PlaybookConfig("sysctl_baseline", inventory=[inv],
                                   extra_vars={"sysctl_profile": "web"}), settings)
    run.wait()
    run.status, run.exit_code, run.stats["host01"].changed
"""

from orchestrator.playbooks.catalog import check_playbook, resolve_playbook, shipped_playbooks
from orchestrator.playbooks.config import PlaybookConfig, parse_extra_vars
from orchestrator.playbooks.events import HostStats, PlaybookEvent, failure_message
from orchestrator.playbooks.run import (
    PlaybookRun,
    RunStatus,
    load_run,
    prepare,
    read_events,
    run,
    run_async,
)
from orchestrator.playbooks.tuning import Tuning, mitogen_status

__all__ = [
    "HostStats",
    "PlaybookConfig",
    "PlaybookEvent",
    "PlaybookRun",
    "RunStatus",
    "Tuning",
    "check_playbook",
    "failure_message",
    "load_run",
    "mitogen_status",
    "parse_extra_vars",
    "prepare",
    "read_events",
    "resolve_playbook",
    "run",
    "run_async",
    "shipped_playbooks",
]
