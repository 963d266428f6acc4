"""The local instance's SQLite storage, with its connections kept open.

Dagster's SQLite storages create a SQLAlchemy engine and open a new connection for every read and
write, then close it: 4-12 ms per event log entry here, several times per event for a materialization
or a check verdict (the run's database, then the cross-run index). A tiny full backfill writes about
2,000 of them, each step waiting on its own. This storage is Dagster's, on the same files, except that
each process keeps one engine per database open, so a write is one short transaction:

- `synchronous=NORMAL` where the database is in WAL mode (Dagster sets WAL): a commit no longer waits
  for the disk, and an application crash loses nothing; a power cut may lose the last events, never
  the database (SQLite's documented guarantee). Production keeps its event log in Postgres (deploy/).
- A run's own database is checkpointed after every write: the UI follows a live run by watching that
  file, which WAL writes would otherwise leave untouched until the run's process ends.
- After a fork the parent's connections are left alone: a run forked from the launcher's forkserver
  opens its own.

`instance_class` in dagster.yaml selects it: Dagster builds its SQLite storages as configured (the
default: under $DAGSTER_HOME) and `KeptConnectionsInstance` puts ours on the same files in their place.
Removing that section goes back to Dagster's own; other storages (Postgres, deploy/) are left as they are.
The Dagster names it builds on are private (ops/dagster_private.py).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from dagster import DagsterInstance

from pgx_dagster.ops.dagster_private import (
    SQLITE_INDEX_SHARD,
    SqliteEventLogStorage,
    SqliteRunStorage,
    SqliteScheduleStorage,
    instance_config_defaults,
)

BUSY_TIMEOUT_S = 30  # as Dagster's SQLite event log: wait for another process's write, then fail
OPEN_DATABASES = 32  # per storage: the index, the runs in flight and the runs the UI is showing


class Engines:
    """One engine per database file, for this process only, the least recently used closed beyond `limit`."""

    def __init__(self, limit: int = OPEN_DATABASES):
        self._limit = limit
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._engines: OrderedDict[str, sqlalchemy.Engine] = OrderedDict()

    def get(self, conn_string: str, checkpoint_every_write: bool = False) -> sqlalchemy.Engine:
        with self._lock:
            engines = self._this_process()
            if conn_string not in engines:
                engines[conn_string] = _open(conn_string, checkpoint_every_write)
            engines.move_to_end(conn_string)
            while len(engines) > self._limit:
                engines.popitem(last=False)[1].dispose()
            return engines[conn_string]

    def close(self, keep: str | None = None) -> None:
        """Close every engine but `keep`'s (a wipe deletes the files under the others)."""
        with self._lock:
            engines = self._this_process()
            for conn_string in [c for c in engines if c != keep]:
                engines.pop(conn_string).dispose()

    def _this_process(self) -> OrderedDict[str, sqlalchemy.Engine]:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours to use or close
            self._pid, self._engines = os.getpid(), OrderedDict()
        return self._engines

    def __len__(self) -> int:
        return len(self._engines)


def _open(conn_string: str, checkpoint_every_write: bool) -> sqlalchemy.Engine:
    engine = sqlalchemy.create_engine(conn_string, connect_args={"timeout": BUSY_TIMEOUT_S})

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            cursor.execute("PRAGMA synchronous=NORMAL")
        if checkpoint_every_write:
            cursor.execute("PRAGMA wal_autocheckpoint=1")
        cursor.close()

    return engine


@contextmanager
def _transaction(engine: sqlalchemy.Engine) -> Iterator[sqlalchemy.Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


class _OneDatabase:
    """`connect()` of a storage with one database (`_conn_string`): Dagster's run and schedule storages."""

    _conn_string: str

    def __init__(self, conn_string: str, inst_data: Any = None):
        super().__init__(conn_string, inst_data)  # type: ignore[call-arg]
        self.engines = Engines()

    @contextmanager
    def connect(self) -> Iterator[sqlalchemy.Connection]:
        with _transaction(self.engines.get(self._conn_string)) as conn:
            yield conn

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self.engines.close()


class PooledSqliteRunStorage(_OneDatabase, SqliteRunStorage):
    pass


class PooledSqliteScheduleStorage(_OneDatabase, SqliteScheduleStorage):
    pass


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    def __init__(self, base_dir: str, inst_data: Any = None):
        super().__init__(base_dir, inst_data)
        self.engines = Engines()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sqlalchemy.Connection]:
        # Dagster's own body, with the engine kept: the lock serialises this storage's threads.
        with self._db_lock:
            engine = self.engines.get(
                self.conn_string_for_shard(shard), checkpoint_every_write=shard != SQLITE_INDEX_SHARD
            )
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with _transaction(engine) as conn:
                yield conn

    def wipe(self) -> None:
        self.engines.close(keep=self.conn_string_for_shard(SQLITE_INDEX_SHARD))  # wipe deletes the run shards
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self.engines.close()


def kept_connections(storage: Any) -> Any:
    """Dagster's SQLite storage as ours, on the same files; any other storage (Postgres) as it is."""
    if type(storage) is SqliteRunStorage:
        return PooledSqliteRunStorage(storage._conn_string, storage.inst_data)
    if type(storage) is SqliteScheduleStorage:
        return PooledSqliteScheduleStorage(storage._conn_string, storage.inst_data)
    if type(storage) is SqliteEventLogStorage:
        return PooledSqliteEventLogStorage(storage._base_dir, storage.inst_data)
    return storage


class KeptConnectionsInstance(DagsterInstance):
    """Dagster's instance, its SQLite storages replaced by ours (dagster.yaml `instance_class`).

    Dagster builds the storages from dagster.yaml as always (creating and migrating the databases);
    this takes their places on disk from them, so there is no second setting to keep in step."""

    def __init__(self, *, run_storage: Any, event_storage: Any, schedule_storage: Any = None, **kwargs: Any):
        super().__init__(
            run_storage=kept_connections(run_storage),
            event_storage=kept_connections(event_storage),
            schedule_storage=kept_connections(schedule_storage),
            **kwargs,
        )

    # What Dagster asks of every instance class: its own settings (none) and its default storages (Dagster's).
    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Any:
        return instance_config_defaults(base_dir)
