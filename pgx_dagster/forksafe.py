"""Processes that fork safely, and never outlive their parent.

DuckDB: `import duckdb` opens a default in-memory connection with a thread per core. A child forked
while those threads live inherits DuckDB's state without its threads and can crash inside DuckDB
(duckdb/duckdb-python#292). We never use that connection, so closing it (which joins its threads)
makes the import safe for the forkservers that preload this module; `duckdb.sql()` would open a new
one. A process that has opened a database of its own must still not fork: see `launcher.process_pool`.

Orphans: every process forked from one that imported this module (the run launcher's forkserver and
its runs, a multiprocess executor's step processes, the benchmark's pool workers) watches its parent
and exits at once when the parent is gone - killed, or crashed - instead of writing on into the lake
while a re-run races it. (The services `pgx materialize` starts are covered by ops/reaper.py.) What a
killed process cannot remove - its DuckDB temp folder, a half-written staging folder - the next process
removes (`remove_stale_temp`).
"""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import duckdb

duckdb.default_connection().close()

PARENT_POLL_SECONDS = 0.5
ORPHANED_EXIT_CODE = 70


def _watch_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(ORPHANED_EXIT_CODE)  # nothing more is written: no cleanup, no flush

    threading.Thread(target=watch, name="pgx-parent-watch", daemon=True).start()


os.register_at_fork(after_in_child=_watch_parent)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch, to the second), from /proc; None where unknown."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def owner_gone(pid: int, path: Path) -> bool:
    """The process that made `path` is gone: no process has its pid, or the one that has it started after
    `path` was last written (the pid was reused - a long backfill spawns thousands of processes, and pids wrap
    at 32768 - so a killed process's folder would otherwise stay until the new owner of its pid ended)."""
    if not pid_alive(pid):
        return True
    started = process_start(pid)
    try:
        return started is not None and started > path.stat().st_mtime + 1  # /proc/stat's boot time is in seconds
    except OSError:
        return False


def remove_stale_temp(folder: str | None, prefix: str) -> list[str]:
    """Remove `<prefix><pid>_*` folders in `folder` (the system temp folder if None) whose process is
    gone: a killed process cannot remove its own. Returns what was removed."""
    root = Path(folder or tempfile.gettempdir())
    removed = []
    for path in root.glob(f"{prefix}*_*"):
        pid = path.name[len(prefix) :].split("_", 1)[0]
        if path.is_dir() and pid.isdigit() and int(pid) != os.getpid() and owner_gone(int(pid), path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed
