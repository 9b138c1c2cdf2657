"""The 0.8.x line's `storage` module, superseded: circuitd holds every protector's state.

Code written for the 0.8.x line imports and constructs these unchanged, and none of them
touches a database: `PostgresStorage(dsn)` keeps its arguments and never connects,
`create_storage()` never connects, and the schema helpers issue no SQL. A storage passed to
`CircuitProtectorPolicy(storage=...)` is accepted and not used: the protector lives in the
daemon, shared by every process that names it, and the first such policy of a process
warns once with `StorageSupersededWarning` (a UserWarning; filter it by that class).
A storage's `namespace` (PostgresStorage's) becomes the protector's name prefix, as the
policy's own `namespace=` does (see `circuit_breaker`).

Layout, as in the library: `base` (`CircuitBreakerStorage`), `memory` (`InMemoryStorage`,
a working process-local store the protectors never read), `postgres` (`PostgresStorage`,
`HAS_PSYCOPG`), `config` (the RC_DB_* environment), `factory` (`create_storage`),
`schema` (the table helpers, which refuse: there is no table).
"""

from __future__ import annotations

import os
import threading
import warnings

from .base import CircuitBreakerStorage
from .config import env_flag, redact, resolve_dsn, resolve_setup_dsn
from .factory import create_storage
from .memory import InMemoryStorage
from .postgres import HAS_PSYCOPG, PostgresStorage
from .schema import (
    RC_TABLE_DDL,
    SchemaReport,
    apply_schema,
    grant_dml,
    inspect_schema,
    migrate_schema,
    role_owns_table,
    verify_dml,
)

__all__ = (
    "CircuitBreakerStorage",
    "InMemoryStorage",
    "PostgresStorage",
    "SchemaReport",
    "HAS_PSYCOPG",
    "RC_TABLE_DDL",
    "StorageSupersededWarning",
    "apply_schema",
    "create_storage",
    "env_flag",
    "grant_dml",
    "inspect_schema",
    "migrate_schema",
    "role_owns_table",
    "redact",
    "resolve_dsn",
    "resolve_setup_dsn",
    "verify_dml",
)


class StorageSupersededWarning(UserWarning):
    """A storage was passed to a protector; circuitd holds the state instead."""


_warned = False
_warned_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A thread of the parent may have held the lock at the fork; the child has none of
    # its threads, so it starts with a lock of its own (the parent's warning stands).
    global _warned_lock
    _warned_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def warn_superseded(storage: object) -> None:
    """Warns, once per process, that `storage` is not used (never raises of its own)."""
    global _warned
    with _warned_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(
        f"{type(storage).__name__} is superseded: circuitd holds every protector's state, "
        "shared by all processes that name it, so the storage argument is not used "
        "(see the resilient_circuit_client README, 'Differences from resilient_circuit')",
        StorageSupersededWarning,
        stacklevel=3,
    )
