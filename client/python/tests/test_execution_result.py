"""0.8.x: a returned object with `success` and `error` attributes (an external bulkhead's
ExecutionResult) carries the call's outcome; 0.8.6's `_record_result` is the rule."""

import asyncio
from dataclasses import dataclass
from typing import Optional

import pytest

from resilient_circuit_client import CircuitProtectorPolicy


@dataclass
class ExecutionResult:
    success: bool
    error: Optional[BaseException] = None


@dataclass
class OnlySuccess:
    success: bool


# (what the function returns, the outcome 0.8.6 records) with should_handle ignoring ValueError.
CASES = [
    (ExecutionResult(True), "success"),
    (ExecutionResult(True, KeyError("x")), "success"),
    (ExecutionResult(False), "failure"),
    (ExecutionResult(False, KeyError("x")), "failure"),
    (ExecutionResult(False, ValueError("not handled")), "success"),
    (OnlySuccess(False), "success"),
    (None, "success"),
    ("a plain value", "success"),
]


def counted(policy) -> tuple[int, int]:
    c = policy._rt.get().counters
    return c.successes, c.failures


def expected(before: tuple[int, int], outcomes: list[str]) -> tuple[int, int]:
    return before[0] + outcomes.count("success"), before[1] + outcomes.count("failure")


def policy_of(address: str, key: str, cached: bool) -> CircuitProtectorPolicy:
    # A window large enough that no case trips the protector.
    return CircuitProtectorPolicy(
        resource_key=key,
        address=address,
        cached=cached,
        failure_limit=(100, 100),
        should_handle=lambda e: not isinstance(e, ValueError),
    )


@pytest.mark.parametrize("cached", [True, False])
def test_a_returned_execution_result_counts_as_its_outcome(address, key, cached):
    policy = policy_of(address, key, cached)

    @policy
    def returns(value):
        return value

    returns(None)
    if cached:
        assert policy._rt.synced.wait(5), "the watch never synced"
    for value, outcome in CASES:
        before = counted(policy)
        assert returns(value) is value
        assert counted(policy) == expected(before, [outcome]), (value, outcome)


def test_coroutine_functions_count_a_returned_execution_result_alike(address, key):
    policy = policy_of(address, key, cached=False)

    @policy
    async def returns(value):
        return value

    async def run() -> None:
        for value, outcome in CASES:
            before = await asyncio.to_thread(counted, policy)
            assert await returns(value) is value
            assert await asyncio.to_thread(counted, policy) == expected(before, [outcome]), (value, outcome)

    asyncio.run(run())
