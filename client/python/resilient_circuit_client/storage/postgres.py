"""`PostgresStorage`: the 0.8.x line's shared store, kept constructible; it never connects.

`PostgresStorage(connection_string, namespace="default")` keeps both arguments and needs
neither psycopg nor a database. Its `namespace` becomes the name prefix of a protector it
is passed to (see `circuit_breaker`). Reading or writing it raises NotImplementedError:
the state is the daemon's, read with `protector.status` / `execution_log` or `circuitctl`.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

from .base import CircuitBreakerStorage, State

#: Whether psycopg could be imported (it is never imported here).
HAS_PSYCOPG = importlib.util.find_spec("psycopg") is not None

_SUPERSEDED = (
    "PostgresStorage is superseded: circuitd holds the protector's state; read it with "
    "protector.status / protector.execution_log or `circuitctl get`"
)


class PostgresStorage(CircuitBreakerStorage):
    """A superseded PostgreSQL store: kept for construction, never connects."""

    backend_name = "postgres"

    def __init__(self, connection_string: str, namespace: str = "default") -> None:
        self.connection_string = connection_string
        self.namespace = namespace

    # Every read and write refuses alike; the arguments are the contract's (see `base`).
    def get_state(self, *args: Any, **kwargs: Any) -> Optional[State]:
        raise NotImplementedError(_SUPERSEDED)

    def set_state(self, *args: Any, **kwargs: Any) -> bool:
        raise NotImplementedError(_SUPERSEDED)

    def update_state(self, *args: Any, **kwargs: Any) -> Optional[State]:
        raise NotImplementedError(_SUPERSEDED)

    def delete_state(self, *args: Any, **kwargs: Any) -> bool:
        raise NotImplementedError(_SUPERSEDED + "; delete one with `circuitctl delete`")
