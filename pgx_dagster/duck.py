"""The DuckDB connection: one isolated, short-lived connection per partition (the legacy pipeline's
standard), and the SQL models in `sql/`.

Every partition's work and every check gets its own connection, with its own temp tables, views and
variables, closed afterwards. The connections of one process (one worker: a run, or a pool worker of
the benchmark's legacy baseline) share that process's in-memory database, created on first use with
the worker's memory limit and a temp directory unique to the process: opening a fresh database per
partition cost 25 ms of CPU each, about 750 times per backfill (benchmarks/). Nothing - connection,
database, temp file - is shared between processes, and a process holding a database must not fork
(DuckDB is not fork-safe): worker processes start from a forkserver. The database loads
`sql/common/macros.sql` once.

The resource is dagster-duckdb's DuckDBResource: `get_connection()` yields a connection as it always
does - to this process's database rather than a new one per call, which is the one thing we change.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing.util
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from dagster import Failure
from pydantic import Field

from pgx_dagster.execution import os_fault
from pgx_dagster.forksafe import OnFirstUse, remove_stale_temp, standing_in
from pgx_dagster.settings import (
    DEFAULT_MEMORY_PER_WORKER,
    DEFAULT_UNIT_ROWS,
    PROCESS_RESERVE_BYTES,
    SQL_DIR,
    parse_bytes,
    profiling,
    s3_timeouts,
)

if TYPE_CHECKING:
    import duckdb
else:  # `import duckdb` starts DuckDB's threads: imported when a step first uses it (forksafe.py)
    duckdb = OnFirstUse("duckdb", globals())
with standing_in(duckdb):  # dagster-duckdb uses duckdb only in the methods DuckDBWorker overrides
    from dagster_duckdb import DuckDBResource


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
    """The data, not the code or the machine: an unreadable file, a missing column, a value that cannot
    be what it must be. Retrying cannot help, so the step fails at once with one message - what, where,
    and what to do - shown as the failure's description in the UI and in `pgx` output."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)


class InternalError(Failure):
    """SQL that cannot run whatever the data: a bug, or a lake written by another version. Not retried."""

    def __init__(self, message: str):
        super().__init__(description=message, allow_retries=False)


def redact(message: str) -> str:
    """Drop quoted values from an engine message (they may be member ids); keep quoted paths."""
    first = message.strip().splitlines()[0] if message.strip() else message
    return re.sub(r"'([^'/]*)'", "'<value>'", first)


# Network trouble on the way to S3 (or any remote file): the step's retry policy may get through.
TRANSIENT = re.compile(r"HTTP|timed? ?out|connection|could not (?:connect|resolve)|unreachable|reset by peer", re.I)


def failure_for(error: duckdb.Error, context: str) -> Exception:
    """What a DuckDB error means for the step running `context` (a SQL model, a dataset read)."""
    if os_fault(error) is not None:  # the disk or S3 refused: the step names the folder (execution.os_faults)
        return error
    first = redact(str(error))
    if isinstance(error, duckdb.HTTPException) or (isinstance(error, duckdb.IOException) and TRANSIENT.search(first)):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "S3"
        return Failure(  # transient: left to the step's retries
            description=f"{context}: {first} (endpoint {endpoint}). Check AWS_ENDPOINT_URL, the network and the "
            "credentials; the step is retried.",
            allow_retries=True,
        )
    if isinstance(error, duckdb.OutOfMemoryException):
        return DataDefect(
            f"{context}: out of memory within the worker's limit ({first}). Raise PGX_MEMORY_PER_WORKER "
            "(and the machine's memory with it), or run fewer partitions at once (PGX_MAX_WORKERS)."
        )
    if isinstance(error, duckdb.ParserException | duckdb.BinderException | duckdb.CatalogException):
        return InternalError(
            f"{context}: {first}. The SQL does not fit its inputs: a bug, or lake files written by another "
            "version of pgx-dagster - re-materialize the upstream assets; if it persists, report it with the run id."
        )
    if not isinstance(error, duckdb.InterruptException):  # reading bytes that are not what they claim
        return DataDefect(
            f"{context}: {first}. A file is missing, unreadable or holds values of the wrong kind. A raw file: "
            "`pgx validate-inputs` checks them all - replace the damaged one and re-run. A lake file: "
            "re-materialize the asset that writes it (its folder names it), then re-run this one."
        )
    return error


class Session:
    """A thin wrapper over one connection: input views, variables, models, timings."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.sql_seconds = 0.0
        self.cpu_started = time.process_time()  # this process's CPU (all threads) when the step began
        self.profiles: list[dict] | None = None  # DuckDB's JSON profile per query, with PGX_PROFILE=1
        self.profile_path: str | None = None  # where the last publish wrote them (datasets.Dataset.publish)
        self.context = "SQL"  # what runs: named in error messages

    def execute(self, statement: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        t0 = time.perf_counter()
        try:
            cursor = self.con.execute(statement, params) if params is not None else self.con.execute(statement)
            if self.profiles is not None:
                profile = json.loads(self.con.get_profiling_information(format="json") or "{}")
                if profile.get("query_name"):  # statements with no plan (SET, a view's definition) have none
                    self.profiles.append(profile)
            return cursor
        except duckdb.Error as error:
            failure = failure_for(error, self.context)
            if failure is error:
                raise
            raise failure from None
        finally:
            self.sql_seconds += time.perf_counter() - t0

    @contextmanager
    def doing(self, context: str) -> Iterator[None]:
        """Name what runs inside (a SQL model, a read of a dataset) in the messages of its errors."""
        before, self.context = self.context, context
        try:
            yield
        finally:
            self.context = before

    def set_variables(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            self.execute(f"SET VARIABLE {key} = ?", [value])

    def view(self, name: str, relation: str, what: str | None = None) -> None:
        """Register an input: `relation` is a table expression such as parquet_relation(...); `what` names it in
        an error in the user's words (default: the view's name)."""
        with self.doing(what or f"reading {name}"):
            self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * FROM {relation}")

    def model_view(self, name: str, model: str) -> None:
        """Register `sql/<model>.sql` as a view called `name`."""
        with self.doing(f"sql/{model}.sql"):
            self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql_text(model)}")

    def model_table(self, name: str, model: str) -> int:
        """Run `sql/<model>.sql` once into a temp table; returns its row count."""
        with self.doing(f"sql/{model}.sql"):
            self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql_text(model)}")
        return self.scalar(f"SELECT count(*) FROM {name}")

    def model_file(self, name: str, model: str, folder: str) -> int:
        """Run `sql/<model>.sql` once into a Parquet file under `folder` and register view `name` over
        it; returns its row count. For a whole-extract table that a temp table would hold in memory."""
        path = quote(f"{folder}/{name}.parquet")
        with self.doing(f"sql/{model}.sql"):
            self.execute(f"COPY ({sql_text(model)}) TO {path} (FORMAT parquet)")
        self.view(name, f"read_parquet({path})")
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

    def register_rows(self, name: str, rows: list[dict[str, Any]], types: Mapping[str, str]) -> None:
        """Temp table `name` of Python rows, its columns `types` (name -> DuckDB type), empty or not."""
        columns = ", ".join(f'"{c}" {t}' for c, t in types.items())
        self.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
        if rows:
            import pyarrow as pa

            # through Arrow, cast to `types` by DuckDB: executemany took 1 ms a row (0.4 s for a cohort's
            # sensitivity analyses)
            arrow = pa.table({c: pa.array([r[c] for r in rows]) for c in types})
            self.con.register(f"{name}__rows", arrow)
            try:
                self.execute(f"INSERT INTO {name} SELECT * FROM {name}__rows")
            finally:
                self.con.unregister(f"{name}__rows")


def extension_path(name: str) -> Path:
    """The extension file shipped in the `duckdb-extension-<name>` wheel, for this DuckDB version."""
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError as exc:
        raise RuntimeError(
            f"DuckDB extension {name!r} is not installed: pip install duckdb-extension-{name}=="
            f"{duckdb.__version__} (extensions are never downloaded at run time)"
        ) from exc
    path = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(f"{path} not found: duckdb-extension-{name} must match duckdb {duckdb.__version__}")
    return path


def s3_secret_sql() -> str:
    """A DuckDB secret for S3 from the AWS default credential chain (environment, profile, instance
    role). AWS_ENDPOINT_URL points it at an S3-compatible store; AWS_REGION / AWS_PROFILE are honoured."""
    options = ["TYPE s3", "PROVIDER credential_chain"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options.append(f"REGION {quote(region)}")
    if os.environ.get("AWS_PROFILE"):
        options.append(f"PROFILE {quote(os.environ['AWS_PROFILE'])}")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        options += [
            f"ENDPOINT {quote(parsed.netloc or parsed.path)}",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}",
        ]
    return f"CREATE OR REPLACE SECRET pgx_s3 ({', '.join(options)})"


class DuckDBWorker(DuckDBResource):
    """Opens the isolated DuckDB connection of one partition's work or check (see module docstring)."""

    database: str = Field(
        default=":memory:",
        description="':memory:' only: each process has its own in-memory database; the data is Parquet in the lake",
    )
    memory_limit: str = Field(
        default=DEFAULT_MEMORY_PER_WORKER,
        description="the worker's memory budget: its process's peak RSS. DuckDB's own memory_limit is this less "
        "what the process holds beside DuckDB (duckdb_memory_limit)",
    )
    threads: int = Field(default=1, description="DuckDB threads per worker (the legacy pipeline: 1)")
    temp_root: str | None = Field(default=None, description="where the per-process DuckDB temp folders go")
    s3: bool = Field(default=False, description="load httpfs/aws (from their wheels) and an S3 secret")
    global_threads: int = Field(
        default=0, description="threads for the global (unpartitioned) steps, which run alone; 0 = all cores"
    )
    unit_rows: int = Field(
        default=DEFAULT_UNIT_ROWS,
        description="rows per unit of a global step's work, so that each unit fits in memory_limit: claim rows "
        "(intake: whole claims), claim observations (demographics: whole persons)",
    )

    @property
    def duckdb_memory_limit(self) -> str:
        """DuckDB's memory_limit: the worker's budget less PROCESS_RESERVE_BYTES (at least half the budget),
        since DuckDB may fill its limit and the Python process around it needs its own few hundred MB."""
        budget = parse_bytes(self.memory_limit)
        return f"{max(budget - PROCESS_RESERVE_BYTES, budget // 2)}B"

    def units(self, rows: int) -> int:
        """How many units a global step splits `rows` into (at least 1)."""
        return max(1, -(-rows // max(1, self.unit_rows)))

    def global_session(self) -> AbstractContextManager[Session]:
        """The connection of a global (unpartitioned) step. It runs alone, so it gets every core; its
        memory is one worker's memory_limit, the legacy pipeline's budget, whatever the extract's size:
        the step works unit by unit (`units`)."""
        return self.session(threads=self.global_threads or os.cpu_count() or 1)

    @contextmanager
    def scratch_dir(self) -> Iterator[str]:
        """A local folder for a step's intermediate files (its units), removed when the step ends."""
        with tempfile.TemporaryDirectory(prefix="pgx_units_", dir=self.temp_root) as folder:
            yield folder

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """DuckDBResource's API: a connection (this process's database, the worker's settings)."""
        with self.session() as s:
            yield s.con

    @contextmanager
    def session(self, threads: int | None = None) -> Iterator[Session]:
        """A new connection to this process's database; `threads` overrides the worker's for this
        connection's work (the global steps and a cohort's analysis, which run alone, use every core)."""
        con = _process_database(self).cursor()
        try:
            # Both are database-wide settings: set them for every connection, as steps take turns.
            con.execute(f"SET threads = {int(threads or self.threads)}")
            con.execute(f"SET memory_limit = {quote(self.duckdb_memory_limit)}")
            session = Session(con)
            if profiling():
                # per connection; 'no_output' keeps each profile for get_profiling_information (JSON)
                # instead of printing it
                con.execute("SET enable_profiling = 'no_output'")
                session.profiles = []
            yield session
        finally:
            con.close()


_DATABASES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_DATABASES_LOCK = threading.Lock()


def _process_database(worker: DuckDBWorker) -> duckdb.DuckDBPyConnection:
    """This process's database for `worker`'s settings."""
    if worker.database != ":memory:":
        raise ValueError(f"DuckDBWorker.database must be ':memory:' (a database per process), got {worker.database!r}")
    secret = s3_secret_sql() if worker.s3 else ""
    config = tuple(sorted(worker.connection_config.items()))
    key = (os.getpid(), worker.memory_limit, worker.temp_root, secret, config)
    with _DATABASES_LOCK:
        inherited = {k[0] for k in _DATABASES} - {os.getpid()}
        if inherited:
            # DuckDB is not fork-safe: fail clearly here rather than crash at random inside DuckDB.
            raise RuntimeError(
                f"process {os.getpid()} was forked from process {min(inherited)}, which holds a DuckDB "
                "database: start worker processes with forkserver or spawn (execution.py build_executor)"
            )
        if key not in _DATABASES:
            _DATABASES[key] = _open_database(worker, secret)
        return _DATABASES[key]


def _open_database(worker: DuckDBWorker, secret: str) -> duckdb.DuckDBPyConnection:
    remove_stale_temp(worker.temp_root, "pgx_duckdb_")
    tmp = tempfile.mkdtemp(prefix=f"pgx_duckdb_{os.getpid()}_{uuid.uuid4().hex[:8]}_", dir=worker.temp_root)
    db = duckdb.connect(
        ":memory:",
        config={
            "threads": worker.threads,
            "memory_limit": worker.duckdb_memory_limit,
            "temp_directory": tmp,
            # jemalloc returns freed memory to the system in the background: without it a 50M-row check's
            # RSS stood 180 MB above memory_limit, and a step's memory stayed resident into the next step.
            "allocator_background_threads": True,
            # Never reach for the network to fetch an extension.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "custom_user_agent": "dagster",
            **worker.connection_config,
        },
    )
    db.execute(sql_text("common/macros"))
    if secret:
        for name in ("httpfs", "aws"):
            db.execute(f"LOAD {quote(str(extension_path(name)))}")
        db.execute(secret)
        # A request to an endpoint that does not answer fails within the deadline (settings.s3_timeouts).
        # GLOBAL: steps run on cursors of this database, and a plain SET would stay on this connection
        # (measured: a silent endpoint took DuckDB's default 4 x 30 s per request).
        connect, read, attempts = s3_timeouts()
        db.execute(f"SET GLOBAL http_timeout = {int(max(connect, read))}")
        db.execute(f"SET GLOBAL http_retries = {attempts - 1}")
    pid = os.getpid()

    def close() -> None:
        if os.getpid() == pid:  # never a forked child's inherited copy
            db.close()
            shutil.rmtree(tmp, ignore_errors=True)

    # multiprocessing's finalizers also run when a pool or forkserver child ends with os._exit,
    # where atexit does not.
    multiprocessing.util.Finalize(None, close, exitpriority=0)
    return db
