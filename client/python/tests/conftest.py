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
from resilient_circuit_client import _connection  # noqa: E402


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


@pytest.fixture(autouse=True)
def connections_of_its_own():
    """Every test starts without the client's connections of earlier tests.

    The client keeps one connection per address for the life of the process, its link
    state included. The OS gives a daemon listening on port 0 a port another one had
    before: 40 listeners in a row reused a port in 29 of 300 tries here (birthday odds
    among the ~7,000 ports Linux picks from for a listener with SO_REUSEADDR), and this
    suite starts some 30 to 40 daemons and listeners. A test whose daemon got the port of
    an earlier test's stopped daemon then met that test's connection with its link down,
    and its calls were decided by the fallback for up to the backoff's cap (forced, the
    dropped-and-counted test of test_uncached_reports counts 1 lost report instead of
    10). In production a new protector sharing the link
    state of a daemon that went away is right; between tests it is not the same daemon.
    Connections already taken by an earlier test's protectors stay with them."""
    yield
    with _connection._lock:
        _connection._connections.clear()
