"""The 0.8.x line's table helpers. circuitd keeps protector state itself, so there is no
table: the names import, and each helper that would have run SQL on a cursor raises
NotImplementedError without touching it. `RC_TABLE_DDL` holds a statement that creates
nothing, so a migration that executes it still runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NoReturn, Sequence, Tuple

RC_TABLE_DDL = "SELECT 1 -- circuitd holds protector state: no rc_circuit_breakers table is needed"

_NO_TABLE = (
    "circuitd holds protector state, so there is no rc_circuit_breakers table to {what}; "
    "see the resilient_circuit_client README, 'Differences from resilient_circuit'"
)


@dataclass(frozen=True)
class SchemaReport:
    """The shape of the 0.8.x line's table, as `inspect_schema` described it."""

    table_present: bool
    columns: Dict[str, str]
    primary_key: Tuple[str, ...]
    indexes: Tuple[str, ...] = field(default=())
    triggers: Tuple[str, ...] = field(default=())


def _refuse(what: str) -> NoReturn:
    raise NotImplementedError(_NO_TABLE.format(what=what))


def inspect_schema(cur: Any) -> SchemaReport:
    _refuse("inspect")


def migrate_schema(cur: Any) -> List[str]:
    _refuse("migrate")


def apply_schema(cur: Any) -> List[str]:
    _refuse("create")


def grant_dml(cur: Any, role: str, privileges: Sequence[str] = ("SELECT", "INSERT", "UPDATE", "DELETE")) -> None:
    _refuse("grant on")


def verify_dml(cur: Any, role: str, privileges: Sequence[str] = ("SELECT", "INSERT", "UPDATE", "DELETE")) -> List[str]:
    _refuse("verify grants on")


def role_owns_table(cur: Any, role: str) -> bool:
    _refuse("own")
