"""The 0.8.x line's RC_DB_* environment, read as it was; nothing here connects.

`resolve_dsn()` answers RC_DB_DSN verbatim, else a conninfo built from RC_DB_HOST,
RC_DB_PORT (5432), RC_DB_NAME (resilient_circuit_db), RC_DB_USER (postgres), RC_DB_PASSWORD
and the RC_DB_SSL* variables when both host and password are set, else None.
`resolve_setup_dsn()` never answers None (localhost and the defaults). `redact` masks
passwords; `env_flag` reads a boolean variable.
"""

from __future__ import annotations

import os
import re
from typing import Optional

_TRUE = ("1", "true", "yes", "on")
_TLS = (("RC_DB_SSLMODE", "sslmode"), ("RC_DB_SSLROOTCERT", "sslrootcert"), ("RC_DB_SSLCERT", "sslcert"), ("RC_DB_SSLKEY", "sslkey"))


def env_flag(name: str, default: bool = False) -> bool:
    """Whether `name` is set to 1, true, yes or on (any case)."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in _TRUE


def _conninfo(host: str, password: Optional[str]) -> str:
    env = os.environ.get
    fields = [
        ("host", host),
        ("port", env("RC_DB_PORT", "5432")),
        ("dbname", env("RC_DB_NAME", "resilient_circuit_db")),
        ("user", env("RC_DB_USER", "postgres")),
        ("password", password),
    ]
    fields += [(key, env(var)) for var, key in _TLS]
    return " ".join(f"{key}={value}" for key, value in fields if value)


def resolve_dsn() -> Optional[str]:
    """The conninfo the 0.8.x line would have used, or None when it would have kept state
    in memory."""
    if os.environ.get("RC_DB_DSN"):
        return os.environ["RC_DB_DSN"]
    host, password = os.environ.get("RC_DB_HOST"), os.environ.get("RC_DB_PASSWORD")
    return _conninfo(host, password) if host and password else None


def resolve_setup_dsn() -> str:
    """As `resolve_dsn`, with localhost and no password when nothing is set."""
    if os.environ.get("RC_DB_DSN"):
        return os.environ["RC_DB_DSN"]
    return _conninfo(os.environ.get("RC_DB_HOST", "localhost"), os.environ.get("RC_DB_PASSWORD"))


def redact(dsn: str) -> str:
    """`dsn` with the value of any `password=` and any URL password replaced by ***."""
    masked = re.sub(r"(?i)(\bpassword=)\S*", r"\g<1>***", dsn)
    return re.sub(r"(://[^:/@\s]+:)[^@/\s]*@", r"\g<1>***@", masked)
