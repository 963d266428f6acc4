"""Processes that fork safely, and never outlive their parent - by explicit calls, never at import.

Importing the code location does nothing to the process (a webserver, a code server, a notebook):
`pgx_dagster_tests/test_import_side_effects.py` holds it to no thread, no at-fork hook and no DuckDB
connection. `import duckdb` itself opens DuckDB's default in-memory connection, with a thread per core
(`duckdb._dbapi_type_object` builds a type through it), so the code location never imports duckdb at
its top: `OnFirstUse` stands in for it until a step first uses it.

The processes the project starts itself call these:
- `protect_children()`, in a process that forks workers - the forkservers (`forkserver_preload`: a
  multiprocess executor's, the benchmark's pool's). DuckDB: a child forked while the
  default connection's threads live inherits DuckDB's state without its threads and can crash inside
  DuckDB (duckdb/duckdb-python#292); we never use that connection, so it is closed (which joins its
  threads), and duckdb stays imported for the children. A process that has opened a database of its own
  must still not fork (`duck._process_database`). Orphans: every child forked from then on calls
  `exit_with_parent()` (an at-fork hook).
- `exit_with_parent()`, in a worker: a run's process and a step's process, at the first step that writes
  the lake (`lake.LakeResource.setup_for_execution`), a pool worker of the benchmark. A thread watches the parent;
  when it is gone - killed, or crashed - the process exits at once instead of writing on into the lake
  while a re-run races it.
The services `pgx materialize` starts (webserver, daemon) are exec'd in sessions of their own: a reaper
kills their process groups when `pgx materialize` dies (ops/reaper.py). What a killed process cannot
remove - its DuckDB temp folder, a half-written staging folder - the next process removes
(`remove_stale_temp`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PARENT_POLL_SECONDS = 0.5
ORPHANED_EXIT_CODE = 70

_protected = False  # inherited by a forked child, as the at-fork hook and the closed connection are
_watching: int | None = None  # the pid of the process whose watch thread runs (a forked child has none)
_forking_parent: int | None = None  # the pid of the process forking now (protect_children's before-fork hook)


def protect_children() -> None:
    """In a process that forks workers: DuckDB imported without the default connection's threads, and
    every child forked from here exits with its parent. Once per process (see module docstring)."""
    global _protected
    if _protected:
        return
    _protected = True
    import duckdb

    duckdb.default_connection().close()
    os.register_at_fork(before=_note_forking_parent, after_in_child=_exit_with_forking_parent)


def _note_forking_parent() -> None:
    global _forking_parent
    _forking_parent = os.getpid()


def _exit_with_forking_parent() -> None:
    # The parent's pid as noted before the fork, not os.getppid() in the child: a parent that dies before
    # the child runs this hook has left it with a new parent already, which it would then watch forever.
    exit_with_parent(_forking_parent)


def exit_with_parent(parent: int | None = None) -> None:
    """This process exits (ORPHANED_EXIT_CODE, no cleanup, no flush) within PARENT_POLL_SECONDS of the death
    of `parent` (its parent's pid; None: its parent now). Once per process: a second call, or a call in a
    forked child that already watches, does nothing."""
    global _watching
    if _watching == os.getpid():
        return
    _watching = os.getpid()
    parent = os.getppid() if parent is None else parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(ORPHANED_EXIT_CODE)  # nothing more is written: no cleanup, no flush

    threading.Thread(target=watch, name="pgx-parent-watch", daemon=True).start()


class OnFirstUse(types.ModuleType):
    """A stand-in for the module `name`, which imports it at the first attribute access: for the libraries
    whose import starts threads - duckdb (see module docstring), numpy and scipy (OpenBLAS's pool: a thread
    per core), pyarrow (jemalloc's). Then every name of `namespace` (the importing module's globals) bound to
    the stand-in is bound to the module itself: a later use costs what it costs on the module (a use through
    the stand-in took 2 us more). Its names are never copied here: a second module object holding DuckDB's
    objects past the interpreter's teardown of DuckDB crashed the process at exit (SIGSEGV)."""

    def __init__(self, name: str, namespace: dict[str, Any] | None = None):
        super().__init__(name)
        self._namespace = namespace if namespace is not None else {}

    def __getattr__(self, attr: str) -> Any:  # only for a name the stand-in does not hold
        if sys.modules.get(self.__name__) is self:  # standing in (`standing_in`): make way for the module
            del sys.modules[self.__name__]
        module = importlib.import_module(self.__name__)
        for alias in [k for k, v in self._namespace.items() if v is self]:
            self._namespace[alias] = module
        return getattr(module, attr)


@contextmanager
def standing_in(module: types.ModuleType) -> Iterator[None]:
    """While importing a library that imports `module` at its top but uses it only in its functions (dagster-
    duckdb), the stand-in takes the module's place, unless the module is imported already."""
    if module.__name__ in sys.modules:
        yield
        return
    sys.modules[module.__name__] = module
    try:
        yield
    finally:
        if sys.modules.get(module.__name__) is module:
            del sys.modules[module.__name__]


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
