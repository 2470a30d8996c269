"""Command runs through the API against the lab's real sshd hosts (direct, behind a bastion,
two hops), followed over server-sent events to the end; cancel kills the remote process."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from api_support import ApiHarness, read_events, wait_status

pytestmark = pytest.mark.lab


def remote_procs(lab: Any, host: str, needle: str) -> list[str]:
    out = lab.lab.host_exec(host, ["ps", "-eo", "pid,args"]).stdout
    return [line for line in out.splitlines() if needle in line and "ps -eo" not in line]


def test_run_on_lab_hosts_streams_output_to_the_end(lab_api: ApiHarness) -> None:
    api = lab_api
    pattern = "public:private:deep"
    command = 'for i in 1 2 3; do echo "$(hostname) line $i"; sleep 0.2; done; echo oops >&2'
    created = api.post("admin", "/api/v1/runs", json={"pattern": pattern, "command": command,
                                                      "timeout": 30})
    assert created.status_code == 202, created.text
    run = created.json()
    hosts = run["hosts"]
    assert {"private01", "deep01"} <= set(hosts)
    events = read_events(api, run["id"])  # connects while the run is in flight
    assert events[0]["data"] == {"status": "running"}
    assert events[-1]["data"] == {"status": "successful"}
    output: dict[str, str] = {}
    for event in events:
        if event["event"] == "output" and event["data"]["stream"] == "stdout":
            output[event["data"]["host"]] = output.get(event["data"]["host"], "") + \
                event["data"]["text"]
    for host in hosts:
        assert output[host] == "".join(f"{host} line {i}\n" for i in (1, 2, 3)), host
    stderr = [e for e in events if e["event"] == "output" and e["data"]["stream"] == "stderr"]
    assert {e["data"]["host"] for e in stderr} == set(hosts)
    finished = [e["data"]["host"] for e in events if e["event"] == "host"]
    assert sorted(finished) == sorted(hosts)
    detail = wait_status(api, run["id"], ("successful",))
    assert detail["ok"] == len(hosts)
    for result in detail["results"]:
        assert result["status"] == "ok" and result["rc"] == 0
        assert result["stdout"].endswith("line 3\n") and result["stderr"] == "oops\n"
    # Replaying the finished run gives the same events.
    assert read_events(api, run["id"]) == events


def test_cancel_kills_the_remote_processes(lab_api: ApiHarness, lab: Any) -> None:
    api = lab_api
    marker = f"sleep 299.{time.monotonic_ns() % 10**6}"  # a remote process we can recognize
    created = api.post("admin", "/api/v1/runs", json={
        "pattern": "private01", "command": f"echo started; {marker}; echo never",
        "timeout": 600})
    run_id = created.json()["id"]
    deadline = time.monotonic() + 20
    while not remote_procs(lab, "private01", marker):
        assert time.monotonic() < deadline, "the remote command never started"
        time.sleep(0.1)

    def cancel_soon() -> None:
        time.sleep(0.3)
        api.post("admin", f"/api/v1/runs/{run_id}/cancel")

    thread = threading.Thread(target=cancel_soon)
    thread.start()
    events = read_events(api, run_id)
    thread.join()
    assert events[-1]["data"] == {"status": "canceled"}
    texts = [e["data"]["text"] for e in events if e["event"] == "output"]
    assert texts == ["started\n"]
    deadline = time.monotonic() + 10
    while remote_procs(lab, "private01", marker):
        assert time.monotonic() < deadline, "the remote process survived the cancel"
        time.sleep(0.1)
    detail = wait_status(api, run_id, ("canceled",))
    assert detail["results"][0]["status"] == "canceled"
