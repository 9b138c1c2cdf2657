"""resilient_circuit_client: the resilient_circuit library's decorators, backed by circuitd.

Change `from resilient_circuit import X` to `from resilient_circuit_client import X`: the
decorators keep their signatures and behaviour, and a `CircuitProtectorPolicy` now lives
in the daemon, shared by every process that names the same `resource_key`.

Layout:
- `circuit_breaker`: `CircuitProtectorPolicy`, `CircuitStatus` (and `ExecutionLog`).
- `exceptions`: `ProtectionException`, `ProtectedCallError`, `RetryLimitReached`.
- `retry`: `RetryWithBackoffPolicy`; `backoff`: `ExponentialDelay`, `FixedDelay`.
- `failsafe`: `SafetyNet`.
- Private: `_protector` (acquire, report, cached mode), `_watch` (the Watch thread),
  `_notifier` (exactly-once callbacks), `_connection` (channel, link, batcher), `_link`
  (reconnect backoff), `_machine` (the LOCAL fallback's status machine), `_wire`
  (conversions), `_generated` (gRPC code from proto/, see generate.py).
"""

from .backoff import ExponentialDelay, FixedDelay
from .circuit_breaker import CircuitProtectorPolicy, CircuitStatus
from .exceptions import ProtectedCallError, ProtectionException, RetryLimitReached
from .failsafe import SafetyNet
from .retry import RetryWithBackoffPolicy

__all__ = [
    "CircuitProtectorPolicy",
    "CircuitStatus",
    "ExponentialDelay",
    "FixedDelay",
    "ProtectedCallError",
    "ProtectionException",
    "RetryLimitReached",
    "RetryWithBackoffPolicy",
    "SafetyNet",
]
