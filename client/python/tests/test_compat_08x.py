"""Code written for the 0.8.x line of resilient_circuit, run unchanged against circuitd.

The first tests read as 0.8.x code does: no `address=` (the daemon comes from
$RESILIENT_CIRCUIT_ADDRESS), a storage argument, a namespace, an
admission_refresh_interval, and the top-level names that line exports. The rest check
what each maps to: the storage is superseded (one warning per process, never a
connection), the namespace is a name prefix, the interval is the cached mode's freshness.
"""

import time
import warnings
from datetime import timedelta
from fractions import Fraction

import pytest

import resilient_circuit_client
from resilient_circuit_client import (
    CircuitProtectorPolicy,
    CircuitState,
    ExponentialDelay,
    FixedDelay,
    ProtectionPolicy,
    RetryWithBackoffPolicy,
    SafetyNet,
    status_enum,
    storage as storage_module,
)
from resilient_circuit_client.buffer import BinaryCircularBuffer
from resilient_circuit_client.circuit_breaker import DEFAULT_ADMISSION_REFRESH_INTERVAL
from resilient_circuit_client.exceptions import ProtectedCallError, RetryLimitReached, SchemaNotReady
from resilient_circuit_client.storage import InMemoryStorage, PostgresStorage, create_storage

#: The public names of the 0.8.6 release, from its sdist's `__all__`s.
TOP_LEVEL_086 = {
    "ExponentialDelay", "CircuitProtectorPolicy", "CircuitState", "FixedDelay", "SafetyNet",
    "ProtectionPolicy", "RetryWithBackoffPolicy", "__version__",
}  # fmt: skip
STORAGE_086 = {
    "CircuitBreakerStorage", "InMemoryStorage", "PostgresStorage", "SchemaReport", "HAS_PSYCOPG",
    "RC_TABLE_DDL", "apply_schema", "create_storage", "env_flag", "grant_dml", "inspect_schema",
    "migrate_schema", "role_owns_table", "redact", "resolve_dsn", "resolve_setup_dsn", "verify_dml",
}  # fmt: skip
RC_ENV = ("RC_NAMESPACE", "RC_DB_DSN", "RC_DB_HOST", "RC_DB_PASSWORD")


@pytest.fixture
def env(monkeypatch, address):
    """The environment 0.8.x code runs in: the daemon from the variable, no RC_* settings."""
    monkeypatch.setenv("RESILIENT_CIRCUIT_ADDRESS", address)
    for name in RC_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def fresh_warning():
    """Forgets that this process already warned about a storage, for one test; after it,
    the process has warned (as it would have)."""
    storage_module._warned = False
    yield
    storage_module._warned = True


def daemon_view(name, address):
    """The daemon's protector `name`, read through a policy of its own (no namespace)."""
    return CircuitProtectorPolicy(resource_key=name, address=address, cooldown=timedelta(seconds=30))


def until(predicate, deadline=10.0):
    """Polls `predicate` until it holds or `deadline` seconds pass."""
    end = time.monotonic() + deadline
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)
    return predicate()


# -- 0.8.x code, unchanged -----------------------------------------------------------------


def test_a_08x_protector_constructs_and_runs_with_every_argument(env, key, address, fresh_warning):
    changes = []
    with pytest.warns(storage_module.StorageSupersededWarning):
        protector = CircuitProtectorPolicy(
            resource_key=key,
            storage=InMemoryStorage(),
            namespace="billing",
            cooldown=timedelta(seconds=30),
            failure_limit=Fraction(2, 3),
            success_limit=None,
            should_handle=lambda e: isinstance(e, ConnectionError),
            on_status_change=lambda policy, old, new: changes.append((policy, old, new)),
            admission_refresh_interval=timedelta(seconds=2),
        )

    @protector
    def call(outcome):
        if outcome == "F":
            raise ConnectionError
        if outcome == "X":
            raise KeyError  # not handled: a success for the protector
        return outcome

    assert call("S") == "S"
    with pytest.raises(KeyError):
        call("X")
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call("F")
    assert protector.status is CircuitState.OPEN
    with pytest.raises(ProtectedCallError):
        call("S")
    assert until(lambda: len(changes) == 1)
    assert changes == [(protector, CircuitState.CLOSED, CircuitState.OPEN)]
    assert list(protector.execution_log) == [True, False, False], "a window of 3, as in the library"
    assert isinstance(protector.execution_log, BinaryCircularBuffer)
    assert protector.execution_log.failure_rate == Fraction(2, 3)
    # The protector is the daemon's, under the namespace's prefix.
    assert protector.name == f"billing/{key}" and protector.resource_key == key
    assert daemon_view(f"billing/{key}", address).status is CircuitState.OPEN
    protector.close()


def test_a_08x_safety_net_with_in_memory_storage(env, key, fresh_warning):
    with pytest.warns(storage_module.StorageSupersededWarning):
        protector = CircuitProtectorPolicy(resource_key=key, storage=InMemoryStorage(), cooldown=timedelta(seconds=1))
    calls = []

    @SafetyNet(policies=(RetryWithBackoffPolicy(max_retries=3), protector))
    def op():
        calls.append(1)
        raise RuntimeError

    with pytest.raises(RetryLimitReached) as raised:
        op()
    assert isinstance(raised.value.__cause__, ProtectedCallError)
    assert len(calls) == 1 and protector.status is CircuitState.OPEN
    protector.close()


def test_the_top_level_names_of_08x_are_here():
    assert TOP_LEVEL_086 <= set(resilient_circuit_client.__all__)
    assert all(hasattr(resilient_circuit_client, name) for name in TOP_LEVEL_086)
    assert CircuitState is status_enum.CircuitStatus is resilient_circuit_client.CircuitStatus
    assert [s.value for s in CircuitState] == ["CLOSED", "OPEN", "HALF_OPEN"]
    assert isinstance(resilient_circuit_client.__version__, str)
    assert DEFAULT_ADMISSION_REFRESH_INTERVAL == timedelta(seconds=1)
    assert issubclass(SchemaNotReady, resilient_circuit_client.ProtectionException)
    for policy in (CircuitProtectorPolicy, RetryWithBackoffPolicy):
        assert issubclass(policy, ProtectionPolicy)
    assert isinstance(FixedDelay(timedelta(seconds=1)), ExponentialDelay)


def test_the_storage_module_has_every_08x_name():
    assert STORAGE_086 <= set(storage_module.__all__)
    assert all(hasattr(storage_module, name) for name in STORAGE_086)
    from resilient_circuit_client.storage.base import CircuitBreakerStorage  # noqa: F401
    from resilient_circuit_client.storage.config import resolve_dsn  # noqa: F401
    from resilient_circuit_client.storage.factory import create_storage as factory  # noqa: F401
    from resilient_circuit_client.storage.memory import InMemoryStorage as memory  # noqa: F401
    from resilient_circuit_client.storage.postgres import PostgresStorage as postgres  # noqa: F401
    from resilient_circuit_client.storage.schema import SchemaReport  # noqa: F401


def test_a_user_policy_derived_from_protection_policy_composes(env, key):
    class Tagging(ProtectionPolicy):
        def __init__(self):
            self.seen = 0

        def __call__(self, func):
            def wrapped(*a, **kw):
                self.seen += 1
                return func(*a, **kw)

            return wrapped

    tagging = Tagging()
    protector = CircuitProtectorPolicy(resource_key=key)
    assert SafetyNet(policies=(tagging, protector))(lambda: 5)() == 5
    assert tagging.seen == 1
    protector.close()


# -- storage: superseded, never an error, never a connection ----------------------------


def test_a_storage_warns_once_per_process_and_is_never_an_error(env, key, fresh_warning):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = CircuitProtectorPolicy(resource_key=key, storage=InMemoryStorage())
        second = CircuitProtectorPolicy(resource_key=key, storage=PostgresStorage("host=db.invalid"))
    superseded = [w for w in caught if issubclass(w.category, storage_module.StorageSupersededWarning)]
    assert len(superseded) == 1
    assert "superseded" in str(superseded[0].message)
    assert superseded[0].filename == __file__, "the warning points at the caller's line"
    assert first.storage.backend_name == "in-memory"
    first.close()
    second.close()


def test_postgres_storage_never_connects(env):
    # An address nothing answers: constructing and passing it must not try it.
    started = time.monotonic()
    pg = PostgresStorage("host=192.0.2.1 port=5432 dbname=x user=u password=p connect_timeout=30", namespace="ns")
    policy = CircuitProtectorPolicy(resource_key="never-connects", storage=pg)
    assert time.monotonic() - started < 10
    assert (pg.connection_string.startswith("host=192.0.2.1"), pg.namespace, pg.backend_name) == (True, "ns", "postgres")
    with pytest.raises(NotImplementedError, match="superseded"):
        pg.get_state("x")
    policy.close()


def test_create_storage_chooses_as_08x_did_and_never_connects(env):
    assert isinstance(create_storage(), InMemoryStorage)
    env.setenv("RC_DB_HOST", "192.0.2.1")
    env.setenv("RC_DB_PASSWORD", "secret")
    env.setenv("RC_NAMESPACE", "tenant")
    pg = create_storage()
    assert isinstance(pg, PostgresStorage) and pg.namespace == "tenant"
    assert "password=secret" in pg.connection_string
    assert storage_module.redact(pg.connection_string).count("secret") == 0
    assert create_storage(namespace="other").namespace == "other"
    env.setenv("RC_DB_DSN", "postgresql://u:pw@h/db")
    assert storage_module.resolve_dsn() == "postgresql://u:pw@h/db"
    assert storage_module.redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_in_memory_storage_still_works_as_a_store():
    store = InMemoryStorage(max_entries=2)
    assert store.get_state("a") is None
    assert store.set_state("a", "OPEN", 3, time.time() + 60, execution_log=[False])
    assert not store.set_state("a", "CLOSED", 0, 0), "a live OPEN is never overwritten"
    store.set_state("b", "CLOSED", 0, 0)
    store.set_state("c", "CLOSED", 0, 0)
    assert store.get_state("a")["state"] == "OPEN", "a live OPEN is never evicted"
    assert store.get_state("b") is None and store.get_state("c") is not None
    assert store.update_state("c", lambda s: {**s, "failure_count": 4})["failure_count"] == 4
    assert store.delete_state("c") and not store.delete_state("c")
    with pytest.raises(ValueError):
        InMemoryStorage(max_entries=0)


def test_the_schema_helpers_refuse_without_touching_the_cursor():
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the cursor was used: {name}")

    for helper in (storage_module.apply_schema, storage_module.inspect_schema, storage_module.migrate_schema):
        with pytest.raises(NotImplementedError, match="no rc_circuit_breakers table"):
            helper(Untouchable())
    with pytest.raises(NotImplementedError):
        storage_module.grant_dml(Untouchable(), "app")


# -- namespace: a prefix of the protector's name ------------------------------------------


def test_namespaces_keep_the_same_resource_key_apart(env, key, address):
    a = CircuitProtectorPolicy(resource_key=key, namespace="tenant-a", cooldown=timedelta(seconds=30))
    b = CircuitProtectorPolicy(resource_key=key, namespace="tenant-b", cooldown=timedelta(seconds=30))
    with pytest.raises(ConnectionError):
        a(_fail)()
    assert a.status is CircuitState.OPEN
    assert b.status is CircuitState.CLOSED
    assert b(lambda: "served")() == "served"
    assert daemon_view(key, address).status is CircuitState.CLOSED, "no namespace: a third protector"
    for p in (a, b):
        p.close()


def test_the_default_namespace_is_no_namespace(env, key):
    plain = CircuitProtectorPolicy(resource_key=key, cooldown=timedelta(seconds=30))
    default = CircuitProtectorPolicy(resource_key=key, namespace="default", cooldown=timedelta(seconds=30))
    assert plain.name == default.name == key
    with pytest.raises(ConnectionError):
        default(_fail)()
    assert plain.status is CircuitState.OPEN, "one protector, as one namespace in the library"
    for p in (plain, default):
        p.close()


def test_the_namespace_comes_from_the_storage_then_the_argument_then_rc_namespace(env, key):
    assert CircuitProtectorPolicy(resource_key=key, storage=PostgresStorage("", namespace="s")).name == f"s/{key}"
    assert CircuitProtectorPolicy(resource_key=key, namespace="arg").name == f"arg/{key}"
    env.setenv("RC_NAMESPACE", "run-42")
    assert CircuitProtectorPolicy(resource_key=key).name == f"run-42/{key}"
    assert CircuitProtectorPolicy(resource_key=key, namespace="arg").name == f"arg/{key}"


# -- admission_refresh_interval: the cached mode's freshness ------------------------------


def test_admission_refresh_interval_is_the_cached_modes_freshness(env, key):
    default = CircuitProtectorPolicy(resource_key=key)
    assert default.admission_refresh_interval == timedelta(seconds=1)
    assert (default._rt.cached, default._rt.watch_staleness) == (True, 1.0)
    two = CircuitProtectorPolicy(resource_key=key, admission_refresh_interval=timedelta(seconds=2))
    assert (two._rt.cached, two._rt.watch_staleness) == (True, 2.0)
    ours = CircuitProtectorPolicy(
        resource_key=key, admission_refresh_interval=timedelta(seconds=2), watch_staleness=timedelta(seconds=5)
    )
    assert ours._rt.watch_staleness == 5.0, "watch_staleness, when given, wins"
    for every_call in (None, timedelta(0)):
        assert CircuitProtectorPolicy(resource_key=key, admission_refresh_interval=every_call)._rt.cached is False


def test_refreshing_on_every_call_sees_a_peers_open_at_once(env, key, address):
    mine = CircuitProtectorPolicy(resource_key=key, admission_refresh_interval=None, cooldown=timedelta(seconds=30))
    assert mine(lambda: 1)() == 1
    peer = daemon_view(key, address)
    peer.status = CircuitState.OPEN
    with pytest.raises(ProtectedCallError):
        mine(lambda: 1)()
    for p in (mine, peer):
        p.close()


def _fail():
    raise ConnectionError
