"""Helpers shared by the API tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from api import create_app
from api.deps import get_inventory
from inventory import Inventory
from orchestrator.auth.service import AuthService
from orchestrator.storage import accounts
from orchestrator.storage.db import Database
from orchestrator.storage.models import GrantCreate, Role, UserCreate
from orchestrator.storage.settings import ServiceSettings

PASSWORD = "correct horse battery staple"

INVENTORY = """\
all:
  vars:
    ansible_user: sg
    ansible_password: hunter2
  children:
    web:
      hosts:
        web1: {ansible_host: 127.0.0.1, ansible_port: 1, env: prod, tier: 1}
        web2: {ansible_host: 127.0.0.1, ansible_port: 1, env: dev, api_token: abc}
    db:
      vars:
        db_secret: s3cret
        db_port: 5432
      hosts:
        db1: {ansible_host: 127.0.0.1, ansible_port: 1, env: prod}
    prod:
      children:
        proddb: {hosts: {db2: {ansible_host: 127.0.0.1, ansible_port: 1}}}
"""


def fast_settings(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    """Service settings for tests: cheap argon2, quick SSH timeouts, isolated state."""
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "user_known_hosts": tmp_path / "no_known_hosts",
        "use_ssh_agent": False,
        "connect_timeout": 3.0,
        "idle_timeout": 0,
        "password_hash_memory_kib": 64,
        "password_hash_time_cost": 1,
        "password_hash_parallelism": 1,
        "auth_failure_backoff": 0.0,
        "reconnect_backoff_base": 0.01,
        "reconnect_backoff_max": 0.05,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@dataclass
class ApiHarness:
    """An app on a fresh database, with helpers to make users and sign them in."""

    client: TestClient
    db: Database
    settings: ServiceSettings
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def add_user(self, username: str, role: Role, groups: tuple[str, ...] = (),
                 *, password: str = PASSWORD) -> int:
        auth = AuthService(self.settings)
        with self.db.session() as session:
            user = auth.create_user(session, data=UserCreate(username=username, role=role,
                                                             password=password))
            assert user.id is not None
            for group in groups:
                accounts.create_grant(session, data=GrantCreate(user_id=user.id, group=group))
            session.commit()
        self.ids[username] = user.id
        return user.id

    def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = self.client.post("/api/v1/login",
                                    json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.tokens[username] = body["access_token"]
        return body

    def headers(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            self.login(username)
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def get(self, username: str, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.headers(username), **kw)

    def post(self, username: str, url: str, **kw: Any) -> Any:
        return self.client.post(url, headers=self.headers(username), **kw)

    def patch(self, username: str, url: str, **kw: Any) -> Any:
        return self.client.patch(url, headers=self.headers(username), **kw)

    def delete(self, username: str, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers=self.headers(username), **kw)


# The cast of the RBAC tests: role and granted groups.
USERS: dict[str, tuple[Role, tuple[str, ...]]] = {
    "admin": (Role.ADMIN, ()),
    "op_web": (Role.OPERATOR, ("web",)),
    "view_web": (Role.VIEWER, ("web",)),
    "op_prod": (Role.OPERATOR, ("prod",)),
    "op_none": (Role.OPERATOR, ()),
}


@contextlib.contextmanager
def make_api(db: Database, settings: ServiceSettings,
             inventory: Inventory | None) -> Iterator[ApiHarness]:
    app = create_app(settings, database=db)
    app.dependency_overrides[get_inventory] = lambda: inventory
    with TestClient(app) as client:
        harness = ApiHarness(client=client, db=db, settings=settings)
        for name, (role, groups) in USERS.items():
            harness.add_user(name, role, groups)
        yield harness




def audit_rows(api: ApiHarness) -> list[dict[str, Any]]:
    """Every audit entry, oldest first, as the admin reads them."""
    body = api.get("admin", "/api/v1/audit", params={"limit": 1000}).json()
    return list(reversed(body["data"]))


def wait_status(api: ApiHarness, run_id: int, statuses: tuple[str, ...],
                user: str = "admin", timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api.get(user, f"/api/v1/runs/{run_id}").json()
        if run["status"] in statuses or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def read_events(api: ApiHarness, run_id: int, user: str = "admin",
                last_event_id: int | None = None) -> list[dict[str, Any]]:
    """The whole SSE stream, parsed: [{event, id, data}]."""
    headers = api.headers(user)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with api.client.stream("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    return events
