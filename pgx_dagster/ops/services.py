"""Start and stop the Dagster webserver and daemon on loopback, by process id: for `pgx materialize`,
the benchmark and the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgx_dagster.ops.reaper import wait_gone
from pgx_dagster.settings import REPO_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A service's process starts through this: the signals it stops on back to their defaults, then exec.
# A child inherits its parent's ignored signals and its thread's blocked ones, across exec: a service
# started from a process that ignored or blocked SIGTERM ignored it, and stop() waited 20 s each time.
_DEFAULT_STOP_SIGNALS = (
    "import os, signal, sys\n"
    "stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}\n"
    "for s in stop: signal.signal(s, signal.SIG_DFL)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def spawn(command: list[str], **popen_args: object) -> subprocess.Popen:
    """`command` as a service: its own process group (stop() signals the group), stopping on SIGTERM /
    SIGINT / SIGHUP whatever this process ignores or blocks (the same pid: the wrapper execs it)."""
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-c", _DEFAULT_STOP_SIGNALS, *command], start_new_session=True, **popen_args
    )


def reap_on_death(proc: subprocess.Popen) -> subprocess.Popen:
    """A watchdog (ops/reaper.py) that kills `proc`'s process group, with everything in it, if this
    process dies without stopping it - a SIGKILL runs no cleanup."""
    return spawn(
        [sys.executable, "-m", "pgx_dagster.ops.reaper", str(os.getpid()), str(proc.pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group (the daemon and webserver have children), then SIGKILL what is left of
    it: a code server outlives its webserver by up to its 20 s heartbeat timeout otherwise."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if not wait_gone([proc.pid], grace):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_gone([proc.pid], 5.0)  # until init has reaped the orphans
    proc.wait(timeout=10)


def wait_for_url(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not up after {timeout} s:\n{log.read_text()[-3000:]}")


DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def wait_for_daemon(url: str, timeout: float, log: Path, proc: subprocess.Popen | None = None) -> None:
    """Until the backfill and run-queue daemons report healthy heartbeats (a backfill submitted
    before that waits for the daemon to start, which is not the backfill's time)."""
    deadline = time.monotonic() + timeout
    needed = {"BACKFILL", "QUEUED_RUN_COORDINATOR"}
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:  # it died starting: say why at once
            raise RuntimeError(f"the daemon exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        request = urllib.request.Request(
            f"{url}/graphql",
            data=json.dumps({"query": DAEMON_HEALTH}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            statuses = json.load(r)["data"]["instance"]["daemonHealth"]["allDaemonStatuses"]
        if needed <= {d["daemonType"] for d in statuses if d["healthy"]}:
            return
        time.sleep(0.5)
    raise TimeoutError(f"the daemon is not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def prepare_storage(home: Path) -> None:
    """Create the instance's storage here, once, before the services start: a webserver and a daemon
    creating a fresh SQLite instance at the same moment can both stamp its schema version and leave it
    unusable ("alembic_version has more than one head")."""
    from dagster import AssetKey, DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)  # run storage
        instance.fetch_materializations(AssetKey("none"), limit=1)  # the event log's index
        instance.all_instigator_state()  # schedule storage


@contextmanager
def dagster_services(
    home: Path, env: dict[str, str], logs: Path, daemon: bool = True, stock_daemon: bool = False
) -> Iterator[str]:
    """Yield the webserver URL with `dagster-webserver` and (unless `daemon` is False: one already
    serves the instance) `pgx daemon` - dagster-daemon with the PGX_DAEMON_TICK_SECONDS loop - or, with
    `stock_daemon`, `dagster-daemon run` as Dagster ships it (its 30 s loop), running on loopback against the
    instance at `home`; both stop on the way out."""
    port = free_port()
    env = {**os.environ, **env, "DAGSTER_HOME": str(home)}
    logs.mkdir(parents=True, exist_ok=True)
    prepare_storage(home)
    procs: list[subprocess.Popen] = []
    reapers: list[subprocess.Popen] = []

    def start(name: str, command: list[str]) -> subprocess.Popen:
        proc = spawn(
            [*command, "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=env,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        reapers.append(reap_on_death(proc))
        return proc

    try:
        web = start("dagster-webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)])
        daemon_command = [str(BIN / "dagster-daemon"), "run"] if stock_daemon else [str(BIN / "pgx"), "daemon"]
        daemon_proc = start("dagster-daemon", daemon_command) if daemon else None
        url = f"http://127.0.0.1:{port}"
        wait_for_url(f"{url}/server_info", 120, web, logs / "dagster-webserver.log")
        wait_for_daemon(url, 120, logs / "dagster-daemon.log", daemon_proc)
        yield url
    finally:
        for proc in reversed(procs):
            stop(proc)
        for reaper in reapers:  # each exits once its group is gone, which stop() made sure of
            try:
                reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a slow machine: the reaper has nothing left to do
                reaper.kill()
                reaper.wait()
