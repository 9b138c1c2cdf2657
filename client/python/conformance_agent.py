"""The Python agent of the cross-language test (conformance/README.md, section 3): one
protector on the daemon at ADDRESS, commands on stdin, one line per answer and per status
change on stdout.

    python3 client/python/conformance_agent.py 127.0.0.1:50051 shared
"""

from __future__ import annotations

import pathlib
import sys
import threading
from datetime import timedelta

# Run from the source tree, as the tests do; the installed distribution brings the dependencies.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from resilient_circuit_client import CircuitProtectorPolicy, ProtectionException  # noqa: E402
from resilient_circuit_client._connection import REQUEST_TIMEOUT  # noqa: E402

_out = threading.Lock()


def say(line: str) -> None:
    """One whole line, flushed at once (the callback's thread and the main one both write)."""
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Failed(Exception):
    pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: conformance_agent.py ADDRESS NAME", file=sys.stderr)
        return 2
    address, name = argv
    policy = CircuitProtectorPolicy(
        resource_key=name,
        address=address,
        cooldown=timedelta(seconds=60),
        failure_limit=(2, 2),
        fallback="deny",
        # Generous, so the daemon decides even on a loaded machine.
        acquire_deadline=timedelta(seconds=2),
        on_status_change=lambda _policy, old, new: say(f"event {old.value} {new.value}"),
    )
    # The constructor never waits for the daemon; the ensure makes the client know the
    # protector's status before `ready`, so a trip its Watch learns of from a snapshot
    # is still announced.
    policy._rt.start()
    policy._rt.ensure(REQUEST_TIMEOUT)
    say("ready")

    for raw in sys.stdin:
        line = raw.strip()
        words = line.split()
        if words == ["quit"]:
            break
        if len(words) != 2 or words[0] not in ("fail", "succeed") or not words[1].isdigit():
            say(f"error unknown command: {line}")
            continue
        fail = words[0] == "fail"

        @policy
        def call() -> None:
            if fail:
                raise Failed()

        for _ in range(int(words[1])):
            try:
                call()
            except (Failed, ProtectionException):
                # A rejection is not an error here: the protector may be OPEN already.
                pass
        say(f"ok {line}")
    policy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
