"""Importing the code location does nothing to the process: a webserver, a code server or a notebook
that imports `pgx_dagster.definitions` gets no thread, no at-fork hook and no DuckDB connection (forksafe.py).

Each check runs in a fresh interpreter: a probe records the threads (Python's and the OS's), wraps
os.register_at_fork and duckdb's connect / default_connection / close, imports the module, and reports what
changed. `import duckdb` itself opens DuckDB's default connection (with its threads), so the probe reports
the import of duckdb, with the line that imported it, as a connection opened. At-fork hooks the standard
library and installed libraries register for themselves at their import (random, threading, logging,
concurrent.futures, filelock: each re-seeds or re-initialises its own state in a child) are not the code
location's; every other hook is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = r"""
import importlib, json, os, sys, sysconfig, threading, traceback

def tasks():
    return sorted(os.listdir("/proc/self/task"))  # the OS's threads: native ones too (DuckDB's, OpenBLAS's)

events = []
real_register = os.register_at_fork
LIBRARIES = tuple(sysconfig.get_paths()[p] for p in ("stdlib", "platstdlib", "purelib", "platlib"))

def register_at_fork(**hooks):
    caller = traceback.extract_stack()[-2]
    if not caller.filename.startswith(LIBRARIES):  # a library's own (random, logging, filelock: their locks)
        events.append(("register_at_fork", [f"{caller.filename}:{caller.lineno}"]))
    return real_register(**hooks)

os.register_at_fork = register_at_fork

def wrap(module, name):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        events.append((f"duckdb.{name}", []))
        return real(*args, **kwargs)

    setattr(module, name, wrapper)

class DuckDBImported:
    # Reports `import duckdb` (it opens the default connection) with the importing line, then wraps its API.
    def find_spec(self, name, path=None, target=None):
        if name != "duckdb":
            return None
        stack = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
        events.append(("import duckdb", stack[-3:]))  # the importing line last
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            for api in ("connect", "default_connection", "close"):
                wrap(module, api)

        spec.loader.exec_module = exec_module
        return spec

import importlib.util
sys.meta_path.insert(0, DuckDBImported())
threads_before, tasks_before = [t.name for t in threading.enumerate()], tasks()
importlib.import_module(sys.argv[1])
print(json.dumps({
    "events": events,
    "new_threads": [t.name for t in threading.enumerate() if t.name not in threads_before],
    "new_os_threads": len(set(tasks()) - set(tasks_before)),
}))
"""


def probe(module: str, path: Path | None = None) -> dict:
    """What importing `module` did to a fresh interpreter (with `path` first on sys.path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path or ""), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_code_location_starts_no_thread_registers_no_hook_and_opens_no_duckdb_connection():
    found = probe("pgx_dagster.definitions")
    assert found == {"events": [], "new_threads": [], "new_os_threads": 0}


# What forksafe.py did at import until issue 36, and a watch thread started at import: the probe must see each.
OLD_FORKSAFE = """
import os
import duckdb
from pgx_dagster.forksafe import exit_with_parent
duckdb.default_connection().close()
os.register_at_fork(after_in_child=exit_with_parent)
exit_with_parent()
"""


def test_the_probe_sees_each_side_effect_of_the_old_import(tmp_path):
    (tmp_path / "old_forksafe.py").write_text(textwrap.dedent(OLD_FORKSAFE))
    found = probe("old_forksafe", tmp_path)
    kinds = [kind for kind, _where in found["events"]]
    assert kinds == ["import duckdb", "duckdb.default_connection", "register_at_fork"]
    assert found["events"][0][1][-1].endswith("old_forksafe.py:3")  # names the importing line
    assert found["new_threads"] == ["pgx-parent-watch"]
    assert found["new_os_threads"] >= 1


def test_the_probe_sees_a_librarys_native_threads(tmp_path):
    """numpy's import starts OpenBLAS's threads (one per core beyond the first), invisible to `threading`: the
    code location imports it at first use only (forksafe.OnFirstUse)."""
    if (os.cpu_count() or 1) < 2:
        return  # one core: OpenBLAS starts no thread of its own
    found = probe("numpy")
    assert found["new_threads"] == [] and found["new_os_threads"] >= 1
