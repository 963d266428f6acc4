"""`python -m pgx_dagster.ops.reaper <parent pid> <process group>...`: kill the process groups when the
parent dies.

`pgx materialize` (and the tests and the benchmark) start the Dagster webserver and daemon each in a
process group of its own; everything those start - code servers, runs -
stays in the group. A SIGKILLed parent runs no cleanup, so this watchdog, in a session of its own, does
it: when the parent is gone it sends the groups SIGTERM, then SIGKILL two seconds later. It exits once
the groups are gone (the parent stopped them itself)."""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_SECONDS = 0.5
GRACE_SECONDS = 2.0


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _signal(groups: list[int], sig: int) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(groups: list[int], seconds: float) -> bool:
    """Wait up to `seconds` for every process of `groups` to be gone; whether they are."""
    deadline = time.monotonic() + seconds
    while any(group_alive(g) for g in groups):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def main(argv: list[str]) -> int:
    parent, groups = int(argv[0]), [int(g) for g in argv[1:]]
    while any(group_alive(g) for g in groups):
        if os.getppid() != parent:  # reparented: the parent died
            _signal(groups, signal.SIGTERM)
            wait_gone(groups, GRACE_SECONDS)
            _signal(groups, signal.SIGKILL)
            return 0
        time.sleep(POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
