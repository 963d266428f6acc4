"""The local run launcher: each run's process is forked from a warm server instead of spawned cold.

Dagster's DefaultRunLauncher asks the code server to *spawn* a fresh interpreter per run, which
imports Dagster, pandas and pandera again (2-3 s of CPU here) before the first step; a backfill
starts five runs per stage at once, so on a 2-core machine every stage waited 5-7 s for its runs to
start (benchmarks/). This launcher keeps a multiprocessing forkserver, started once by the process
that launches runs (the daemon), with those third-party libraries preloaded; a run's process forks
from it in milliseconds, finds our code location imported too unless a file of it changed since (then
imports it afresh: an edit reaches the next run, as with the code server; ops/warm_code.py) and executes
the run exactly as `dagster api execute_run` does - the path Dagster's container launchers use.

- It is Dagster's DefaultRunLauncher (a subclass using its public API) except for where a run executes.
  The one private name it needs is the body of `dagster api execute_run` (ops/dagster_private.py); where a
  Dagster upgrade has moved it, it warns once and launches every run as DefaultRunLauncher does.
- Terminate (UI or GraphQL, from any process on this machine): marks the run canceling and sends its
  process SIGTERM, which Dagster turns into a clean cancel.
- A run whose process is gone (killed, out of memory) before the run finished is reported failed, by the
  launching process as soon as the process exits, so the run retries in dagster.yaml start again.
- Opt-in: `run_launcher` in the repo's dagster.yaml; remove it for Dagster's default launcher.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultRunLauncher,
    deserialize_value,
    serialize_value,
)

from pgx_dagster.ops import dagster_private
from pgx_dagster.ops.dagster_private import RUN_ENTRY_MODULE

WORKER_TAG = "pgx/run_worker"  # "<host>:<pid>" of the run's process
RUN_PROCESS_PREFIX = "dagster-run-"
# forkserver_preload imports duckdb without its thread pool, and has every run exit with the forkserver (forksafe.py).
# This module, whose `_run_worker` every run process calls:
# importing it there (Dagster's run storage, alembic) cost 0.37 s per run; like the daemon that launches runs,
# it takes an edit at the daemon's restart. Our own code location last (ops/warm_code.py): a run uses it only if
# none of its files changed since, else imports it afresh, so it is never stale.
PRELOAD = [
    "dagster", RUN_ENTRY_MODULE, "pgx_dagster.forkserver_preload", "pyarrow", "pandas", "pandera.pandas", "sqlalchemy",
    # the analysis stage's statistics (0.7 s per run process otherwise)
    "statsmodels.discrete.conditional_models", "statsmodels.stats.contingency_tables",
    "pgx_dagster.ops.launcher", "pgx_dagster.ops.warm_code",
]  # fmt: skip
IMPORTED_IN = os.getpid()  # the forkserver's, in a run forked from it


def forkserver_context(preload: Sequence[str] = PRELOAD) -> Any:
    """multiprocessing's forkserver, which imports `preload` once (the first caller's list wins)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return context


def start_forkserver() -> None:
    """For `pgx daemon`: warm the forkserver if this instance launches runs with it."""
    with DagsterInstance.get() as instance:
        if isinstance(instance.run_launcher, PreloadedRunLauncher):
            instance.run_launcher.start()


def _run_worker(instance_ref: str, run_id: str) -> None:
    """The run's process: execute it as `dagster api execute_run` would, with the forkserver's code location
    if its files are unchanged (ops/warm_code.py)."""
    from pgx_dagster.forksafe import exit_with_parent
    from pgx_dagster.ops import warm_code

    exit_with_parent()  # also where the forkserver's preload_modules lack forkserver_preload

    # SIGTERM (terminate) interrupts as Ctrl-C does: Dagster's execution reports it as a cancel, and one that
    # comes before the execution starts ends this process, which the launcher then reports (`watch`).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    warm_code.use_or_forget()
    execute = dagster_private.resolve("run_body")  # the launcher resolved it before forking this process
    with DagsterInstance.from_ref(deserialize_value(instance_ref)) as instance:  # type: ignore[arg-type]
        execute(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)


def lost_process_message(run: DagsterRun, pid: int | None) -> str:
    """Why a run failed whose process died first: which partitions, and how to run them again."""
    tags = run.tags
    where = tags.get("dagster/partition") or (
        f"{tags['dagster/asset_partition_range_start']} .. {tags['dagster/asset_partition_range_end']}"
        if "dagster/asset_partition_range_start" in tags else "every partition of the run"
    )  # fmt: skip
    again = f"pgx backfill --reexecute-failed {tags['dagster/backfill']}" if "dagster/backfill" in tags else (
        "re-execute the run from the UI")  # fmt: skip
    return (
        f"the run's process ({pid}) died before the run finished - killed, or out of memory - while on "
        f"partition(s) {where}: their assets are not (or only partly) materialized, nothing half-written is "
        f"published. Re-run them: {again}"
    )


class PreloadedRunLauncher(DefaultRunLauncher):
    """Launches each run in a process forked from a preloaded forkserver (see module docstring)."""

    def __init__(self, inst_data: Any = None, preload_modules: list[str] | None = None):
        super().__init__(inst_data=inst_data)
        self.preload_modules = list(preload_modules if preload_modules is not None else PRELOAD)
        self.forkserver: Any = None
        self.instance_weakref: weakref.ReferenceType[DagsterInstance] | None = None

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Array, Field

        return {
            "preload_modules": Field(
                Array(str), is_required=False, description="modules the forkserver imports once (default: PRELOAD)"
            )
        }

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> PreloadedRunLauncher:
        return cls(inst_data=inst_data, preload_modules=config_value.get("preload_modules"))

    def register_instance(self, instance: DagsterInstance) -> None:
        super().register_instance(instance)
        self.instance_weakref = weakref.ref(instance)  # a weak reference, as Dagster keeps it

    @property
    def launcher_instance(self) -> DagsterInstance:
        instance = self.instance_weakref() if self.instance_weakref is not None else None
        if instance is None:
            raise RuntimeError("PreloadedRunLauncher is not registered with a live Dagster instance")
        return instance

    def forkserver_context(self) -> Any:
        if self.forkserver is None:
            self.forkserver = forkserver_context(self.preload_modules)
        return self.forkserver

    def start(self) -> None:
        """Start the forkserver now (it imports PRELOAD in the background), not at the first run."""
        from multiprocessing import forkserver

        self.forkserver_context()
        forkserver.ensure_running()

    def launch_run(self, context: Any) -> None:
        run = context.dagster_run
        if run.job_code_origin is None or dagster_private.execute_run_command_body() is None:
            return super().launch_run(context)  # Dagster's own launch (a moved name has warned once)
        instance = self.launcher_instance
        # No bookkeeping of our own: the run queue launches from several threads at once, and
        # multiprocessing already tracks (and reaps) the children it starts.
        process = self.forkserver_context().Process(
            target=_run_worker,
            args=(serialize_value(instance.get_ref()), run.run_id),
            name=f"{RUN_PROCESS_PREFIX}{run.run_id}",
            daemon=False,
        )
        process.start()
        instance.add_run_tags(run.run_id, {WORKER_TAG: f"{socket.gethostname()}:{process.pid}"})
        threading.Thread(target=self.watch, args=(process, run.run_id), name=f"watch-{run.run_id}", daemon=True).start()

    def watch(self, process: Any, run_id: str) -> None:
        """Once the run's process has exited: a run it left unfinished is reported failed (canceled if it was
        being canceled), so that run retries start it again and its backfill goes on."""
        process.join()
        instance = self.instance_weakref() if self.instance_weakref is not None else None
        run = instance.get_run_by_id(run_id) if instance is not None else None
        if instance is None or run is None or run.is_finished:
            return
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, f"the run's process ({process.pid}) ended while the run was canceled")
        else:
            instance.report_run_failed(run, lost_process_message(run, process.pid))

    def worker_pid(self, run: DagsterRun) -> int | None:
        host, _, pid = run.tags.get(WORKER_TAG, "").rpartition(":")
        return int(pid) if host == socket.gethostname() and pid.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        if not self.has_instance:
            return False
        instance = self.launcher_instance
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        if WORKER_TAG not in run.tags:
            return super().terminate(run_id)  # launched as Dagster does
        pid = self.worker_pid(run)
        instance.report_run_canceling(run)
        if pid is None:
            instance.report_engine_event(
                "The run's process is not known on this machine: cannot send it a termination signal.", run
            )
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # nothing runs: no process would ever report the cancel
            instance.report_run_canceled(run, f"the run's process ({pid}) was already gone")
        return True

    def join(self, timeout: int = 30) -> None:
        for process in multiprocessing.active_children():
            if process.name.startswith(RUN_PROCESS_PREFIX):
                process.join(timeout)
        super().join(timeout)
