"""The DuckDB connection: one isolated, short-lived connection per step (the seed's standard).

Each connection is in-memory, single-threaded by default, has its own memory limit and a temp
directory unique to it that is removed afterwards, so no connection, database file or temp file is
shared between workers. SQL comes from `sql/`: every connection loads `sql/common/macros.sql`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
from dagster import ConfigurableResource, Failure
from pydantic import Field

from pgx_dagster.settings import DEFAULT_MEMORY_PER_WORKER, SQL_DIR


def sql_text(name: str) -> str:
    """The text of `sql/<name>.sql`, e.g. sql_text('silver/medical')."""
    path = SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"no SQL model {name!r} at {path}")
    return path.read_text()


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def parquet_relation(paths: str | Sequence[str]) -> str:
    """A read_parquet(...) call over one path/glob or a list of them."""
    if isinstance(paths, str):
        paths = [paths]
    listing = ", ".join(quote(p) for p in paths)
    # Columns come from the files themselves, never from the hive folder names.
    return f"read_parquet([{listing}], union_by_name = true, hive_partitioning = false)"


class DataDefect(Failure):
    """SQL failed because of the data (unreadable file, wrong type, missing column): retrying cannot
    help, so the step fails at once. I/O and network errors are left to the step's retry policy."""

    def __init__(self, error: duckdb.Error):
        super().__init__(
            description=f"data defect, not retried: {type(error).__name__}: {redact(str(error))}",
            allow_retries=False,
        )


def redact(message: str) -> str:
    """Drop quoted values from an engine message (they may be member ids); keep quoted paths."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"'([^'/]*)'", "'<value>'", first)


def is_data_defect(error: BaseException) -> bool:
    return isinstance(error, duckdb.ProgrammingError | duckdb.DataError | duckdb.IntegrityError)


class Session:
    """A thin wrapper over one connection: input views, variables, models, timings."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.sql_seconds = 0.0

    def execute(self, statement: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        t0 = time.perf_counter()
        try:
            return self.con.execute(statement, params) if params is not None else self.con.execute(statement)
        except duckdb.Error as error:
            if is_data_defect(error):
                raise DataDefect(error) from None
            raise
        finally:
            self.sql_seconds += time.perf_counter() - t0

    def set_variables(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.execute(f"SET VARIABLE {key} = ?", [value])

    def view(self, name: str, relation: str) -> None:
        """Register an input: `relation` is a table expression such as parquet_relation(...)."""
        self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {relation}")

    def model_view(self, name: str, model: str) -> None:
        """Register `sql/<model>.sql` as a view called `name`."""
        self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql_text(model)}")

    def model_table(self, name: str, model: str) -> int:
        """Run `sql/<model>.sql` once into a temp table; returns its row count."""
        self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql_text(model)}")
        return self.scalar(f"SELECT count(*) FROM {name}")

    def scalar(self, query: str, params: Any = None) -> Any:
        row = self.execute(query, params).fetchone()
        return row[0] if row else None

    def count_parquet(self, paths: str | Sequence[str]) -> int:
        """Row count of Parquet files (a path, a glob or a list)."""
        return self.scalar(f"SELECT count(*) FROM {parquet_relation(paths)}")

    def rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        cur = self.execute(query, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def columns(self, relation: str) -> list[tuple[str, str]]:
        """(name, type) of a relation's columns."""
        return [(r[0], r[1]) for r in self.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


class DuckDBWorker(ConfigurableResource):
    """Opens the isolated DuckDB connection of one step."""

    memory_limit: str = Field(default=DEFAULT_MEMORY_PER_WORKER, description="DuckDB memory_limit per worker")
    threads: int = Field(default=1, description="DuckDB threads per worker (the seed: 1)")
    temp_root: str | None = Field(default=None, description="where per-connection temp folders go")
    global_threads: int = Field(
        default=0, description="threads for the global (unpartitioned) steps, which run alone; 0 = all cores"
    )

    def global_step_threads(self) -> int:
        return self.global_threads or os.cpu_count() or 1

    @contextmanager
    def session(self, threads: int | None = None) -> Iterator[Session]:
        tmp = tempfile.mkdtemp(prefix=f"pgx_duckdb_{os.getpid()}_{uuid.uuid4().hex[:8]}_", dir=self.temp_root)
        con = duckdb.connect(
            ":memory:",
            config={
                "threads": threads or self.threads,
                "memory_limit": self.memory_limit,
                "temp_directory": tmp,
                # Never reach for the network to fetch an extension.
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            },
        )
        try:
            con.execute(sql_text("common/macros"))
            yield Session(con)
        finally:
            con.close()
            shutil.rmtree(tmp, ignore_errors=True)
