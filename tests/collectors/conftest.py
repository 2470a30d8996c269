"""Collector tests: ``--update-fixtures`` rewrites the fixtures' expectations for review."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-fixtures",
        action="store_true",
        default=False,
        help="rewrite tests/collectors/fixtures/*/*.json expectations from the parsers' output",
    )


@pytest.fixture
def update_fixtures(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-fixtures"))


@pytest.fixture
def reader():
    """The sweep reader as a child process on this machine, started as on a host
    (``test_host_reader.LocalReader``)."""
    from test_host_reader import LocalReader

    r = LocalReader()
    try:
        yield r
    finally:
        r.close()
