"""Decisions counted by source (daemon, cache, fallback), and their Prometheus collector."""

from __future__ import annotations

import pytest

from resilient_circuit_client import CircuitProtectorPolicy
from daemon import Daemon



def decorated(policy):
    @policy
    def op():
        return None

    return op


def test_each_decision_is_counted_once_by_its_source(address, key, circuitd_bin):
    uncached = CircuitProtectorPolicy(resource_key=key, address=address, cached=False)
    op = decorated(uncached)
    for _ in range(3):
        op()
    assert uncached.decisions == {"daemon": 3, "cache": 0, "fallback": 0}

    cached = CircuitProtectorPolicy(resource_key=key + "-cached", address=address)
    op = decorated(cached)
    op()
    assert cached._rt.synced.wait(5), "the watch never synced"
    before = cached.decisions
    for _ in range(10):
        op()
    after = cached.decisions
    assert after["cache"] - before["cache"] == 10, after
    assert after["daemon"] == before["daemon"] and after["fallback"] == 0, after

    gone = Daemon(circuitd_bin)
    gone.stop()
    fallback = CircuitProtectorPolicy(resource_key=key + "-gone", address=gone.address, fallback="allow", cached=False)
    decorated(fallback)()
    assert fallback.decisions == {"daemon": 0, "cache": 0, "fallback": 1}


def test_the_prometheus_collector_exports_the_counts(address, key):
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        pytest.fail("prometheus_client is needed: pip install prometheus_client (./run-tests installs it)")
    from resilient_circuit_client.prometheus import register

    policy = CircuitProtectorPolicy(resource_key=key, address=address, cached=False)
    op = decorated(policy)
    op()
    op()
    registry = CollectorRegistry()
    register(registry)
    value = registry.get_sample_value
    name = "resilient_circuit_client_decisions_total"
    assert value(name, {"protector": key, "source": "daemon"}) == 2
    assert value(name, {"protector": key, "source": "cache"}) == 0
    assert value(name, {"protector": key, "source": "fallback"}) == 0
