"""Prometheus export of the client's decisions, when `prometheus_client` is installed.

    from resilient_circuit_client.prometheus import register
    register()  # into prometheus_client.REGISTRY, or register(my_registry)

exports ``resilient_circuit_client_decisions_total{protector, source}``: how many calls
each source decided in this process, ``source`` being ``daemon`` (an Acquire answered),
``cache`` (admitted locally in cached mode) or ``fallback`` (the daemon could not be
asked). Protectors of the same name are summed. The counts are read at scrape time from
the live protectors: nothing is added to the call path.

Importing this module without `prometheus_client` raises ImportError naming the package.
"""

from __future__ import annotations

try:
    from prometheus_client.core import REGISTRY, CounterMetricFamily
except ImportError as e:  # pragma: no cover - exercised only without the package
    raise ImportError(
        "resilient_circuit_client.prometheus needs prometheus_client: pip install prometheus_client"
    ) from e

from . import _protector

SOURCES = ("daemon", "cache", "fallback")


class DecisionsCollector:
    """A custom collector (``collect()``) over every live protector of this process."""

    def collect(self):
        totals: dict[str, list[int]] = {}
        for rt in list(_protector._runtimes):
            counts = totals.setdefault(rt.name, [0, 0, 0])
            counts[0] += rt.daemon_decisions
            counts[1] += rt.cache_decisions
            counts[2] += rt.fallback_decisions
        family = CounterMetricFamily(
            "resilient_circuit_client_decisions",
            "Calls decided by the resilient-circuit client, by protector and source",
            labels=["protector", "source"],
        )
        for name in sorted(totals):
            for source, count in zip(SOURCES, totals[name]):
                family.add_metric([name, source], count)
        yield family


def register(registry=REGISTRY) -> DecisionsCollector:
    """Registers a `DecisionsCollector` with `registry` (the default registry unless
    given) and returns it (to unregister later)."""
    collector = DecisionsCollector()
    registry.register(collector)
    return collector
