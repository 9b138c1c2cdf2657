"""How the 0.8.x line's extra arguments map onto a daemon-held protector.

- `namespace` becomes a prefix of the protector's name: `namespace + "/" + resource_key`.
  "/" because the daemon lists and watches protectors by name prefix, so
  `circuitctl list --prefix tenant-a/` shows one namespace's protectors; a namespace that
  itself holds "/" can collide with another's keys (documented). The namespace is the
  storage's (PostgresStorage carries one, as in the library), else `namespace=`, else
  $RC_NAMESPACE; "default" (the library's own default) or empty adds no prefix, so
  `namespace="default"` names the same protector as no namespace at all, as it did.
- `admission_refresh_interval` (default 1 s) is the cached mode's freshness bound: the
  longest a local decision trusts what the Watch stream last said (`watch_staleness`,
  which wins when given). None or zero asked storage on every call: here every call then
  asks the daemon (cached mode off).
- `storage` is superseded: accepted, warned about once per process, not used.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Optional

#: The 0.8.x line's default `admission_refresh_interval`.
DEFAULT_ADMISSION_REFRESH_INTERVAL = timedelta(seconds=1)
NAMESPACE_SEPARATOR = "/"
#: The Watch stream asks for progress at a third of the staleness bound; below this the
#: progress traffic would cost more than the freshness is worth.
MIN_STALENESS = 0.3


def namespace_of(namespace: Optional[str], storage: object) -> Optional[str]:
    """The namespace the 0.8.x line would have kept this protector's state under."""
    held = getattr(storage, "namespace", None)
    if isinstance(held, str):
        return held
    if namespace is not None:
        return namespace
    return os.environ.get("RC_NAMESPACE")


def protector_name(resource_key: str, namespace: Optional[str]) -> str:
    if not namespace or namespace == "default":
        return resource_key
    return f"{namespace}{NAMESPACE_SEPARATOR}{resource_key}"


def freshness(
    admission_refresh_interval: Optional[timedelta], watch_staleness: Optional[timedelta], cached: bool
) -> tuple[bool, float]:
    """(cached, staleness in seconds) for the runtime."""
    if watch_staleness is not None:
        return cached, max(MIN_STALENESS, watch_staleness.total_seconds())
    interval = admission_refresh_interval
    if interval is None or interval <= timedelta(0):
        # Refresh on every call: no local decision at all. The stream (for callbacks)
        # keeps the default bound.
        return False, DEFAULT_ADMISSION_REFRESH_INTERVAL.total_seconds()
    return cached, max(MIN_STALENESS, interval.total_seconds())
