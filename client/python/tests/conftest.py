"""Fixtures: the source tree on sys.path, and one circuitd for the whole session."""

from __future__ import annotations

import pathlib
import sys
import uuid

import pytest

HERE = pathlib.Path(__file__).resolve().parent
# The tests exercise this tree's code; the installed distribution provides dependencies.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from daemon import Daemon, circuitd_binary  # noqa: E402


@pytest.fixture(scope="session")
def circuitd_bin() -> pathlib.Path:
    return circuitd_binary()


@pytest.fixture(scope="session")
def daemon(circuitd_bin):
    d = Daemon(circuitd_bin)
    yield d
    d.stop()


@pytest.fixture
def address(daemon) -> str:
    return daemon.address


@pytest.fixture
def key(request) -> str:
    """A protector name of its own for each test."""
    return f"py-{request.node.name[:80]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
