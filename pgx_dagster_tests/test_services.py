"""The services `pgx materialize`, the tests and the benchmark start (pgx_dagster/ops/services.py): stopping one
leaves nothing of its process group, whatever the starting process does with SIGTERM."""

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pgx_dagster.ops.reaper import group_alive
from pgx_dagster.ops.services import reap_on_death, spawn, stop

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
LEADER = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {IGNORES_SIGTERM!r}]); time.sleep(600)"


@contextmanager
def _sigterm(inherited: str) -> Iterator[None]:
    """This process with SIGTERM as a child would inherit it: ignored, blocked in this thread, or default."""
    if inherited == "ignored":
        before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, before)
    elif inherited == "blocked":
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    else:
        yield


@pytest.mark.parametrize("inherited", ["default", "ignored", "blocked"])
def test_stopping_a_service_leaves_nothing_of_its_process_group(inherited):
    """A child that ignores SIGTERM (as a code server waits out its heartbeat) is killed with its group,
    so the service's watchdog exits at once instead of timing out the teardown of a finished backfill -
    also when the starting process ignores or blocks SIGTERM (a child inherits both: stop() took 26 s)."""
    with _sigterm(inherited):
        leader = spawn([sys.executable, "-c", LEADER])
        reaper = reap_on_death(leader)
    time.sleep(1.5)  # the child is started
    started = time.monotonic()
    stop(leader, grace=1.0)
    assert not group_alive(leader.pid) and time.monotonic() - started < 10
    assert reaper.wait(timeout=5) is not None
