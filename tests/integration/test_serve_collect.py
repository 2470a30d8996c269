"""serve's collection loop: sweeps of lab hosts land in VictoriaMetrics while the API runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from vm import ThrowawayVM, require_victoria_metrics

from api import create_app
from orchestrator.storage.settings import ServiceSettings

pytestmark = pytest.mark.lab


def service_settings(lab, tmp_path: Path, **extra: object) -> ServiceSettings:
    return ServiceSettings(
        state_dir=tmp_path / "state",
        inventory=[str(lab.inventory_path)],
        collect=True,
        collect_pattern="public:private",
        collect_interval=1.0,
        user_known_hosts=tmp_path / "none",
        use_ssh_agent=False,
        **extra,
    )


def test_serve_sweeps_into_the_configured_victoria_metrics(lab, tmp_path) -> None:
    require_victoria_metrics()
    vm = ThrowawayVM(tmp_path / "vm").start()
    try:
        app = create_app(service_settings(lab, tmp_path, vm_url=vm.url))
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            series = vm.wait_for_samples('up{job="node"}', count=5 * 3, timeout=30)
        by_host = {s.labels["instance"]: s for s in series}
        assert set(by_host) == {"host01", "host02", "host03", "private01", "private02"}
        assert all(v == 1 for s in series for v in s.values)
        assert all(len(s.timestamps) >= 2 for s in series)  # it keeps sweeping
    finally:
        vm.close()


def test_serve_starts_and_stops_an_embedded_victoria_metrics(lab, tmp_path) -> None:
    require_victoria_metrics()
    app = create_app(service_settings(lab, tmp_path, vm_port=0))
    with TestClient(app) as client:
        collection = app.state.serverguard.collection
        assert collection is not None
        url = collection.url
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        pid = collection.backend.embedded.pid
        data_dir = tmp_path / "state" / "victoria-metrics"
        assert data_dir.is_dir()
        deadline = time.monotonic() + 30
        found = 0
        while time.monotonic() < deadline and not found:
            requests.get(f"{url}/internal/force_flush", timeout=5)
            got = requests.get(
                f"{url}/api/v1/export", params={"match[]": 'up{instance="private01"}'}, timeout=5
            )
            found = len(got.text.splitlines())
            time.sleep(0.5)
        assert found, "no sweep reached the embedded VictoriaMetrics"
        assert client.get("/healthz").status_code == 200
    # Stopped cleanly with the service.
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_serve_follows_inventory_changes_and_survives_a_broken_one(
    lab, tmp_path, monkeypatch, caplog
) -> None:
    """Hosts added to the inventory files are swept without a restart; a broken edit is
    reported and collection goes on with the last good inventory."""
    import yaml

    import api.inventory_source
    import orchestrator.collection

    require_victoria_metrics()
    monkeypatch.setattr(orchestrator.collection, "WATCH_INTERVAL", 0.3)
    monkeypatch.setattr(api.inventory_source, "RECHECK", 0.1)
    full = yaml.safe_load(lab.inventory_path.read_text())
    smaller = yaml.safe_load(lab.inventory_path.read_text())
    del smaller["all"]["children"]["public"]["hosts"]["host03"]
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(smaller))
    vm = ThrowawayVM(tmp_path / "vm").start()
    try:
        settings = service_settings(lab, tmp_path, vm_url=vm.url).model_copy(
            update={"inventory": [str(inventory)], "collect_pattern": "public"})
        app = create_app(settings)
        with TestClient(app) as client:
            collection = app.state.serverguard.collection
            assert seen(vm, 'up{instance="host01"}', 2) >= 2
            assert collection.hosts == 2

            inventory.write_text("all: [this is: not an inventory\n")
            deadline = time.monotonic() + 15
            while "still collecting with the previous one" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text[-2000:]
                time.sleep(0.2)
            assert collection.hosts == 2 and collection.reloads == 0
            before = seen(vm, 'up{instance="host01"}', 1)
            assert seen(vm, 'up{instance="host01"}', before + 2) >= before + 2  # goes on

            inventory.write_text(yaml.safe_dump(full))
            assert seen(vm, 'up{instance="host03"}', 2) >= 2
            assert all(v == 1 for s in vm.export('up{instance="host03"}') for v in s.values)
            assert collection.hosts == 3 and collection.reloads == 1
            assert client.get("/healthz").status_code == 200
    finally:
        vm.close()


def seen(vm: ThrowawayVM, match: str, count: int) -> int:
    """How many samples of ``match`` VictoriaMetrics has, waiting up to 30 s for ``count``."""
    return sum(len(s.values) for s in vm.wait_for_samples(match, count=count, timeout=30))
