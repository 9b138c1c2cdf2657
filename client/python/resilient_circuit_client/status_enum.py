"""The library's `status_enum` module: `CircuitStatus`, a protector's three statuses.

Its own module, as in the library, so code importing `resilient_circuit.status_enum` keeps
working; the package exports it as `CircuitStatus` and, as the 0.8.x line does, `CircuitState`.
"""

import enum


class CircuitStatus(enum.Enum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
