"""The DuckDB connection (pgx_dagster/duck.py): each session is its own connection to the process's
database - nothing leaks from one partition's work to the next - and the global steps get more."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from benchmarks.pool import process_pool
from pgx_dagster import forksafe
from pgx_dagster.duck import DuckDBWorker, InternalError
from pgx_dagster.reporting import peak_rss_mb, reset_peak_rss


def test_sessions_do_not_share_temp_objects_or_variables():
    worker = DuckDBWorker()
    with worker.session() as s:
        s.execute("CREATE TEMP TABLE partition_rows AS SELECT 1 AS x")
        s.set_variables({"event_year": 2019})
        assert s.scalar("SELECT age_band(40)") == "35-44"  # the macros are there
    with worker.session() as s:
        with pytest.raises(InternalError, match="partition_rows does not exist.*a bug, or lake files"):
            s.execute("SELECT * FROM partition_rows")
        assert s.scalar("SELECT getvariable('event_year')") is None


def _duckdb_setting(memory_limit: str) -> str:
    """How DuckDB reports a memory_limit of `memory_limit`."""
    con = duckdb.connect(config={"memory_limit": memory_limit})
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_settings_are_per_session_and_global_steps_get_every_core_within_the_budget():
    setting = "SELECT current_setting('threads'), current_setting('memory_limit')"
    # DuckDB gets the budget less the process's reserve (512 MB), but never less than half the budget.
    budgets = {"2GB": 1_488_000_000, "1GB": 500_000_000, "8GiB": 8 * 2**30 - 512_000_000, "1.5 gb": 988_000_000}
    assert {b: DuckDBWorker(memory_limit=b).duckdb_memory_limit for b in budgets} == {
        b: f"{n}B" for b, n in budgets.items()
    }
    with DuckDBWorker(memory_limit="2GB", threads=1).global_session() as s:
        assert s.execute(setting).fetchone() == (os.cpu_count() or 1, _duckdb_setting("1488MB"))
        assert _duckdb_setting("1488MB") != _duckdb_setting("2GB")
    with DuckDBWorker(memory_limit="1GB").session() as s:  # settings are the connection's, not left over
        assert s.execute(setting).fetchone() == (1, _duckdb_setting("500MB"))


@pytest.mark.parametrize("budget", ["", "2", "0GB", "-1GB", "2 gigabytes", "GB", "1.5.0GB", "nan"])
def test_a_budget_that_is_not_a_size_is_a_clear_error(budget: str):
    expected = rf"PGX_MEMORY_PER_WORKER={re.escape(repr(budget))} is not valid: expected a positive size such as 2GB"
    with pytest.raises(ValueError, match=expected), DuckDBWorker(memory_limit=budget).session():
        pass


def test_global_steps_split_into_units_of_unit_rows():
    worker = DuckDBWorker(unit_rows=1000)
    assert [worker.units(n) for n in (0, 1, 1000, 1001, 10_500)] == [1, 1, 1, 2, 11]


def _temp_dir_of_child(out: str, temp_root: str) -> None:
    with DuckDBWorker(temp_root=temp_root).session() as s:
        s.execute("SELECT 1")
    Path(out).write_text(json.dumps([p.name for p in Path(temp_root).iterdir()]))


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_each_process_has_its_own_temp_dir_removed_when_it_ends(tmp_path, method):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    with DuckDBWorker(temp_root=str(temp_root)).session() as s:  # the parent's database, before the fork
        s.execute("SELECT 1")
    parent_dirs = {p.name for p in temp_root.iterdir()}
    assert len(parent_dirs) == 1
    child = multiprocessing.get_context(method).Process(
        target=_temp_dir_of_child, args=(str(tmp_path / "seen"), str(temp_root))
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    seen = set(json.loads((tmp_path / "seen").read_text()))
    assert len(seen - parent_dirs) == 1  # the child opened a database of its own
    assert {p.name for p in temp_root.iterdir()} == parent_dirs  # and removed its folder on exit


def _open_session_in_child(temp_root: str) -> str:
    try:
        with DuckDBWorker(temp_root=temp_root).session() as s:
            return f"ok {s.scalar('SELECT 42')}"
    except RuntimeError as error:
        return str(error)


def test_a_process_forked_from_one_holding_a_database_refuses_to_open_one(tmp_path):
    """DuckDB is not fork-safe (a forked pool worker crashed in CI): a clear error, not a random crash."""
    with DuckDBWorker(temp_root=str(tmp_path)).global_session() as s:  # live DuckDB threads
        s.execute("SELECT 1")
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        message = pool.apply(_open_session_in_child, (str(tmp_path),))
    assert f"forked from process {os.getpid()}, which holds a DuckDB database" in message


def _environment_variable(name: str) -> str | None:
    return os.environ.get(name)


def _partition_years(_: object = None) -> list[str]:
    from pgx_dagster.partitions import event_year_partitions

    return event_year_partitions.get_partition_keys()


def test_worker_pools_start_clean_from_the_forkserver(tmp_path, monkeypatch):
    with DuckDBWorker(temp_root=str(tmp_path)).global_session() as s:
        s.execute("SELECT 1")
    with process_pool(2) as pool:  # the forkserver may be running already
        assert list(pool.map(_open_session_in_child, [str(tmp_path)] * 2)) == ["ok 42"] * 2
    monkeypatch.setenv("TEST_SET_AFTER_THE_FORKSERVER", "seen")
    monkeypatch.setenv("PGX_MAX_YEAR", "2017")  # read when the code location is imported (the partitions)
    with process_pool(2) as pool:  # workers take the caller's environment as it is now
        assert list(pool.map(_environment_variable, ["TEST_SET_AFTER_THE_FORKSERVER"] * 2)) == ["seen"] * 2
        # a forkserver started earlier may have imported the code location with its own settings: not these
        assert list(pool.map(_partition_years, [None] * 2)) == [["2016", "2017"]] * 2


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: DuckDB's default connection starts no threads")
def test_protect_children_leaves_no_duckdb_threads_and_registers_one_hook():
    count = "len(os.listdir('/proc/self/task'))"
    script = f"""
import os, dagster
hooks = []
register = os.register_at_fork
os.register_at_fork = lambda **hook: (hooks.append(hook), register(**hook))[1]
before = {count}
import duckdb
with_default_connection = {count}
from pgx_dagster.forksafe import protect_children
imported = len(hooks)
protect_children()
protect_children()
print(before, with_default_connection, {count}, imported, len(hooks))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, with_default_connection, after, imported, hooks = map(int, out.split())
    assert with_default_connection > before  # `import duckdb` starts its default connection's threads
    assert after == before
    assert (imported, hooks) == (0, 1)  # importing forksafe registers nothing; protect_children once


def _gone(pid: int) -> bool:
    try:  # a zombie is gone too: it only waits for its new parent to reap it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("protected", [True, False])
def test_a_child_forked_after_protect_children_exits_with_its_parent(protected):
    """The orphan exit is protect_children's doing: a child forked without it outlives its parent. The parent
    dies before the child's protection runs (an earlier at-fork hook holds it up), as happens when the parent
    is killed straight after the fork: the child still exits, for it watches the parent it was forked from."""
    script = f"""
import os, time
from pgx_dagster import forksafe
os.register_at_fork(after_in_child=lambda: time.sleep(1))  # runs before protect_children's hook
if {protected}:
    forksafe.protect_children()
child = os.fork()
if child == 0:
    for fd in (1, 2):  # let go of the output the test reads to its end
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    time.sleep(30)
    os._exit(0)
print(child, flush=True)
os._exit(0)  # the parent dies; no cleanup
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    child = int(out.stdout)
    try:
        deadline = time.monotonic() + 10 * forksafe.PARENT_POLL_SECONDS
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(child) == protected
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_exit_with_parent_starts_one_watch_per_process():
    script = """
import threading
from pgx_dagster.forksafe import exit_with_parent
exit_with_parent()
exit_with_parent()
print(sum(t.name == "pgx-parent-watch" for t in threading.enumerate()))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["1"]


def test_each_step_reports_its_own_peak_rss_not_an_earlier_steps():
    """A run's process works through partitions and checks in turn; each one's peak_rss_mb is its own."""
    earlier_step = b"\x01" * (400 * 2**20)  # written, so resident
    del earlier_step
    before = peak_rss_mb()
    reset_peak_rss()
    assert before - peak_rss_mb() > 300
    this_step = b"\x01" * (200 * 2**20)
    assert peak_rss_mb() >= 200 and len(this_step) == 200 * 2**20


def test_a_steps_memory_is_returned_to_the_system_when_it_ends(tmp_path):
    """Freed DuckDB memory goes back to the system (jemalloc's background threads), so it neither counts
    against the next step's budget nor stands above memory_limit uncounted."""
    script = f"""
import time
from pgx_dagster.duck import DuckDBWorker
rss = lambda: next(int(x.split()[1]) // 1024 for x in open("/proc/self/status") if x.startswith("VmRSS:"))
worker = DuckDBWorker(memory_limit="2GB", temp_root={str(tmp_path)!r})
with worker.session() as s:
    start = rss()
    s.execute("CREATE TEMP TABLE t AS SELECT range AS i, repeat('x', 40) AS pad FROM range(6000000)")
    held = rss()
for _ in range(50):
    if rss() - start < 100:
        break
    time.sleep(0.2)
print(held - start, rss() - start)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    held, left = map(int, out.stdout.split())
    assert held > 300 and left < 100, (held, left)


def test_stale_temp_folders_go_also_when_their_pid_was_reused_and_a_live_owners_stay(tmp_path):
    """remove_stale_temp: a folder of a dead process goes; so does one whose pid now belongs to a process started
    after the folder was last written (pids wrap); a folder of its live owner stays."""
    import subprocess
    import time

    from pgx_dagster.forksafe import remove_stale_temp

    live = subprocess.Popen(["sleep", "30"])
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        owned = tmp_path / f"pgx_duckdb_{live.pid}_a_owned"
        reused = tmp_path / f"pgx_duckdb_{live.pid}_b_reused"
        gone = tmp_path / f"pgx_duckdb_{dead.pid}_c_gone"
        for folder in (owned, reused, gone):
            folder.mkdir()
        old = time.time() - 3600  # written an hour before the live process started: another process's pid
        os.utime(reused, (old, old))
        removed = remove_stale_temp(str(tmp_path), "pgx_duckdb_")
        assert sorted(removed) == sorted([str(reused), str(gone)])
        assert owned.is_dir() and not reused.exists() and not gone.exists()
    finally:
        live.kill()
        live.wait()
