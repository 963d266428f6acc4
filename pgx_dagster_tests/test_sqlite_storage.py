"""The local instance's SQLite storage (pgx_dagster/ops/sqlite_storage.py): Dagster's, on Dagster's
files, with each process's connections kept open. What users rely on: everything it writes is what
Dagster's own storage reads back, the UI still follows a live run, a forked run process and a wipe
leave no connection pointing at the wrong file. The time it saves is measured by the benchmark
(`--engines dagster,dagster_sqlite`), not here."""

import os
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, EventLogEntry, asset, materialize

from pgx_dagster.ops import dagster_private
from pgx_dagster.ops.materialize import write_instance
from pgx_dagster.ops.sqlite_storage import (
    Engines,
    PooledSqliteEventLogStorage,
    PooledSqliteRunStorage,
    PooledSqliteScheduleStorage,
)


@asset
def reported(context) -> None:
    for i in range(5):
        context.log.info(f"line {i}")


def _home(tmp_path: Path, own_storage: bool = False) -> Path:
    """tmp_path/home with the repo's dagster.yaml; `own_storage`: without its `instance_class`, i.e.
    Dagster's own SQLite storage on the same files."""
    return write_instance(tmp_path / "home", without=["instance_class"] if own_storage else [])


def _log(run_id: str, message: str) -> EventLogEntry:
    return EventLogEntry(
        error_info=None, level=20, user_message=message, run_id=run_id, timestamp=time.time(), job_name="j"
    )


def test_the_local_instance_keeps_its_connections_and_dagsters_storage_reads_what_it_wrote(tmp_path):
    home = _home(tmp_path)
    with DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PooledSqliteRunStorage)
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert isinstance(instance.schedule_storage, PooledSqliteScheduleStorage)
        result = materialize([reported], instance=instance)
        assert result.success
        run_id = result.run_id
        ours = instance.all_logs(run_id)
        # one engine per database, kept: the run's own and the cross-run index
        assert len(instance.event_log_storage.engines) == 2
        assert len(instance.run_storage.engines) == 1
    assert sum(e.user_message.startswith("line ") for e in ours) == 5
    with DagsterInstance.from_config(str(_home(tmp_path, own_storage=True))) as theirs:
        assert type(theirs.event_log_storage).__name__ == "SqliteEventLogStorage"
        assert theirs.get_run_by_id(run_id).is_success
        assert [e.user_message for e in theirs.all_logs(run_id)] == [e.user_message for e in ours]
        latest = theirs.get_latest_materialization_event(reported.key)
        assert latest is not None and latest.run_id == run_id  # the cross-run index too


def test_the_ui_still_sees_every_write_of_a_live_run(tmp_path):
    """The UI follows a run by watching its database file. Kept WAL connections would leave that file
    untouched until the run's process ended; a checkpoint after every write keeps it live."""
    with DagsterInstance.from_config(str(_home(tmp_path))) as instance:
        storage = instance.event_log_storage
        run_id = "1" * 8 + "-0000-4000-8000-" + "0" * 12
        storage.store_event(_log(run_id, "before the watch"))
        seen: list[str] = []
        arrived = threading.Event()

        def on_event(entry, _cursor):
            seen.append(entry.user_message)
            if entry.user_message == "live 2":  # the last write (the watch may also replay the earlier one)
                arrived.set()

        storage.watch(run_id, None, on_event)
        time.sleep(0.5)  # the file watcher's thread starts
        for i in range(3):
            storage.store_event(_log(run_id, f"live {i}"))
            time.sleep(0.3)
        arrived.wait(timeout=15)
        storage.end_watch(run_id, on_event)
    assert seen[-3:] == ["live 0", "live 1", "live 2"]


def test_a_forked_process_opens_its_own_connections(tmp_path):
    with DagsterInstance.from_config(str(_home(tmp_path))) as instance:
        storage = instance.event_log_storage
        run_id = "2" * 8 + "-0000-4000-8000-" + "0" * 12
        storage.store_event(_log(run_id, "parent before"))
        parents = storage.engines.get(storage.conn_string_for_shard(run_id))
        pid = os.fork()
        if pid == 0:  # the child: a run forked from the launcher's forkserver does the same
            code = 1
            try:
                if storage.engines.get(storage.conn_string_for_shard(run_id)) is not parents:
                    storage.store_event(_log(run_id, "child"))
                    code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        storage.store_event(_log(run_id, "parent after"))
        assert [e.user_message for e in instance.all_logs(run_id)] == ["parent before", "child", "parent after"]


def test_a_wipe_leaves_no_connection_to_a_deleted_file(tmp_path):
    home = _home(tmp_path)
    run_id = "3" * 8 + "-0000-4000-8000-" + "0" * 12
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.store_event(_log(run_id, "before the wipe"))
        storage.wipe()
        storage.store_event(_log(run_id, "after the wipe"))
    # read by a fresh process's storage: a write through a connection to the deleted file would be lost
    with DagsterInstance.from_config(str(_home(tmp_path, own_storage=True))) as theirs:
        assert [e.user_message for e in theirs.all_logs(run_id)] == ["after the wipe"]


def test_engines_are_kept_per_database_and_the_least_recently_used_closed_beyond_the_limit(tmp_path):
    engines = Engines(limit=2)
    a, b, c = (f"sqlite:///{tmp_path / name}.db" for name in "abc")
    first = engines.get(a)
    assert engines.get(a) is first
    engines.get(b)
    engines.get(a)  # a is now the most recent: b goes when c comes
    engines.get(c)
    assert len(engines) == 2
    assert engines.get(a) is first
    assert engines.get(b) is not None and len(engines) == 2
    engines.close()
    assert len(engines) == 0


def test_a_moved_connection_method_is_reported_not_silently_bypassed(monkeypatch):
    dagster_private.check_storage_connections()
    monkeypatch.setattr(dagster_private.SqliteRunStorage, "connect", None)
    with pytest.raises(dagster_private.DagsterUpgradeError, match=r"SqliteRunStorage\.connect is gone"):
        dagster_private.check_storage_connections()
