"""resilient_circuit_client: the resilient_circuit library's decorators, backed by circuitd.

Change `from resilient_circuit import X` to `from resilient_circuit_client import X`: the
decorators keep their signatures and behaviour, and a `CircuitProtectorPolicy` now lives
in the daemon, shared by every process that names the same `resource_key`.

Code written for the 0.8.x line imports the same way: `CircuitState` (its name for
`CircuitStatus`), `ProtectionPolicy`, `status_enum` and `storage` are here too.

Layout:
- `circuit_breaker`: `CircuitProtectorPolicy`, `CircuitStatus` (and `ExecutionLog`).
- `exceptions`: `ProtectionException`, `ProtectedCallError`, `RetryLimitReached`, `SchemaNotReady`.
- `retry`: `RetryWithBackoffPolicy`; `backoff`: `ExponentialDelay`, `FixedDelay`.
- `failsafe`: `SafetyNet`; `policy`: `ProtectionPolicy`; `status_enum`: `CircuitStatus`.
- `buffer`: `BinaryCircularBuffer`, the type of `execution_log`.
- `storage`: the 0.8.x line's storage backends, superseded by the daemon (never connect).
- Private: `_protector` (acquire, report, cached mode), `_aio` (coroutine functions over
  grpc.aio), `_fork` (no RPC in flight across a fork), `_watch` (the Watch thread),
  `_notifier` (exactly-once callbacks), `_connection` (channel, link, batcher), `_link`
  (reconnect backoff), `_machine` (the LOCAL fallback's status machine), `_wire`
  (conversions), `_compat` (the 0.8.x line's arguments), `_generated` (gRPC code from
  proto/, see generate.py).
"""

from importlib import metadata as _metadata

from .backoff import ExponentialDelay, FixedDelay
from .circuit_breaker import CircuitProtectorPolicy
from .exceptions import ProtectedCallError, ProtectionException, RetryLimitReached
from .failsafe import SafetyNet
from .policy import ProtectionPolicy
from .retry import RetryWithBackoffPolicy
from .status_enum import CircuitStatus
from .status_enum import CircuitStatus as CircuitState

try:
    __version__ = _metadata.version("resilient-circuit-client")
except _metadata.PackageNotFoundError:  # run from the source tree, not installed
    __version__ = "0.0.0+source"

__all__ = [
    "CircuitProtectorPolicy",
    "CircuitState",
    "CircuitStatus",
    "ExponentialDelay",
    "FixedDelay",
    "ProtectedCallError",
    "ProtectionException",
    "ProtectionPolicy",
    "RetryLimitReached",
    "RetryWithBackoffPolicy",
    "SafetyNet",
    "__version__",
]
