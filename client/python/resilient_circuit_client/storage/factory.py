"""`create_storage`: the 0.8.x line's choice of backend from the environment; never connects.

It answers what the library would have built, as a superseded value: a `PostgresStorage`
(not connected) when RC_DB_* configure one, else an `InMemoryStorage`. The namespace is
`namespace`, else $RC_NAMESPACE, else "default".
"""

from __future__ import annotations

import os
from typing import Optional

from .base import CircuitBreakerStorage
from .config import resolve_dsn
from .memory import InMemoryStorage
from .postgres import PostgresStorage


def create_storage(namespace: Optional[str] = None) -> CircuitBreakerStorage:
    """The storage the 0.8.x line would have chosen (see the module notes)."""
    if namespace is None:
        namespace = os.environ.get("RC_NAMESPACE", "default")
    dsn = resolve_dsn()
    if dsn is None:
        return InMemoryStorage()
    return PostgresStorage(dsn, namespace=namespace)
