"""The legacy pipeline's process pool (benchmarks/baselines.py legacy_pool): its workers forked from a
forkserver, never from the calling process.

DuckDB is not fork-safe, and the caller may hold a database with live threads (a CI run lost a pool worker to
"terminate called without an active exception" that way). The forkserver preloads the third-party libraries
only: our code reads its settings when imported, and a worker takes the caller's environment as it is when the
pool starts, not the forkserver's from when that started (S3 credentials set since then would be missing).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

# forkserver_preload first: DuckDB imported without its threads, and every worker exits with the forkserver
# (forksafe.py). The rest costs each worker seconds of CPU to import.
PRELOAD = ["pgx_dagster.forkserver_preload", "dagster", "pyarrow", "pandas", "pandera.pandas", "sqlalchemy",
           "statsmodels.discrete.conditional_models", "statsmodels.stats.contingency_tables"]  # fmt: skip
# what a worker keeps of the forkserver's modules of ours: the fork safety it runs on (the packages go: a package
# keeps its submodules as attributes, which `from pgx_dagster import settings` would find stale)
KEEP = {"pgx_dagster.forksafe", "pgx_dagster.forkserver_preload", __name__}


def forkserver_context() -> Any:
    """multiprocessing's forkserver, importing PRELOAD once (if this process starts it: one per process)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def adopt_environment(environ: dict[str, str]) -> None:
    """A worker's start: exit with the parent, take `environ`, and forget any module of ours the forkserver
    imported with its own environment (a forkserver started earlier, by a multiprocess executor, preloads the code
    location), so that the tasks import them with `environ`'s settings."""
    from pgx_dagster.forksafe import exit_with_parent

    exit_with_parent()  # a worker stops writing when the benchmark is gone (forksafe.py)
    os.environ.clear()
    os.environ.update(environ)
    ours = [m for m in sys.modules if m.split(".")[0] in ("pgx_dagster", "benchmarks") and m not in KEEP]
    for name in ours:
        del sys.modules[name]


def process_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes from the forkserver, each with the caller's environment as it is now. A worker exits
    with its parent, the forkserver, which exits with this process."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=forkserver_context(),
        initializer=adopt_environment,
        initargs=(dict(os.environ),),
    )
