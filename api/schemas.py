"""Shapes of inventory resources (hosts, groups, validation); they are not stored.

The stored entities' families live in :mod:`orchestrator.storage.models`.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import SQLModel


class HostPublic(SQLModel):
    name: str
    groups: list[str]  # the host's groups, ancestors included, without 'all'
    vars: dict[str, Any]  # merged variables; secret ones masked


class HostsPublic(SQLModel):
    data: list[HostPublic]
    count: int


class GroupPublic(SQLModel):
    name: str
    children: list[str]
    parents: list[str]
    hosts: list[str]  # hosts of the group and its descendants (as the pattern NAME gives)
    vars: dict[str, Any]  # variables set on the group in the inventory; secret ones masked


class GroupsPublic(SQLModel):
    data: list[GroupPublic]
    count: int


class InventoryProblem(SQLModel):
    severity: str  # error | warning
    message: str
    line: int | None = None
    column: int | None = None
    text: str  # "inventory.yml:7:5: message", as the CLI prints it


class InventoryCheck(SQLModel):
    valid: bool
    errors: list[InventoryProblem]
    warnings: list[InventoryProblem]
    hosts: int
    groups: int


class Health(SQLModel):
    status: str
    database: str
    inventory: str
    runs_in_flight: int


class AuditVerification(SQLModel):
    ok: bool
    entries: int
    last_id: int
    head_hash: str


class PlaybookInfo(SQLModel):
    """A playbook the service can run: ``name`` is what ``POST /playbook-runs`` takes."""

    name: str
    source: str  # shipped | directory
    check_only: bool = False  # always runs in check mode (reports, changes nothing)


class PlaybooksPublic(SQLModel):
    data: list[PlaybookInfo]
    count: int
